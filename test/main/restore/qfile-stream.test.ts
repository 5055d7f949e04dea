// The qfile stream of a VM's qubes.Restore (tar2qfile's format) is untrusted: it becomes a tar
// stream the outer reader checks as usual, or fails with ERR_CORRUPT / ERR_UNSAFE_NAME naming why.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import { QfileToTar, qfileHeader, qfileResult, QFILE_S_IFDIR, QFILE_S_IFREG } from '../../../src/main/restore/qfile-stream.js';
import { OuterTarReader } from '../../../src/main/tar/outer-tar-reader.js';

const entry = (name: string, data: Buffer, mode = QFILE_S_IFREG | 0o644): Buffer => {
  const n = Buffer.from(`${name}\0`);
  return Buffer.concat([qfileHeader(n.length, mode, data.length, 1700000000), n, data]);
};
const dir = (name: string) => entry(name, Buffer.alloc(0), QFILE_S_IFDIR | 0o755);
const END = qfileHeader(0, 0, 0);

/** Feed `input` in `step`-byte pieces; the members the outer reader sees, and the CRC answered. */
async function decode(input: Buffer, step = 7): Promise<{ members: { name: string; data: string }[]; crc: number | undefined }> {
  let crc: number | undefined;
  const t = new QfileToTar((c) => (crc = c));
  const pieces: Buffer[] = [];
  for (let i = 0; i < input.length; i += step) pieces.push(input.subarray(i, i + step));
  Readable.from(pieces).pipe(t);
  const reader = new OuterTarReader(t);
  const members: { name: string; data: string }[] = [];
  for (;;) {
    const e = await reader.next();
    if (e === null) break;
    const data = Buffer.alloc(e.size);
    await e.readInto(data);
    members.push({ name: e.untrustedName, data: data.toString() });
  }
  return { members, crc };
}

test('entries become tar members (directories dropped); the end is answered with the CRC-32 of every byte', async () => {
  const input = Buffer.concat([entry('backup-header', Buffer.from('version=4\n')), dir('vm1'), entry('vm1/private.img.000.enc', Buffer.alloc(3000, 7)), entry('empty', Buffer.alloc(0)), END]);
  for (const step of [1, 7, 512, input.length]) {
    const r = await decode(input, step);
    assert.deepEqual(r.members.map((m) => m.name), ['backup-header', 'vm1/private.img.000.enc', 'empty']);
    assert.equal(r.members[1]!.data, Buffer.alloc(3000, 7).toString());
    assert.equal(r.crc, crc32(input));
  }
  const answer = qfileResult(crc32(input));
  assert.equal(answer.length, 20);
  assert.equal(answer.readUInt32LE(0), 0);
  assert.equal(Number(answer.readBigUInt64LE(8)), crc32(input));
});

test('hostile or broken streams fail with a reason', async () => {
  const cases: [string, Buffer, RegExp][] = [
    ['truncated member', Buffer.concat([entry('a', Buffer.alloc(100))]).subarray(0, 80), /ended before its end marker \(\d+ bytes of a member missing\)/],
    ['no end marker', entry('a', Buffer.from('x')), /ended before its end marker/],
    ['nothing at all', Buffer.alloc(0), /nothing received/],
    ['data after the end', Buffer.concat([entry('a', Buffer.from('x')), END, Buffer.from('more')]), /data after the end marker/],
    ['symlink', Buffer.concat([entry('a', Buffer.from('/etc/passwd'), 0o120777), END]), /regular files only/],
    ['NUL inside a name', Buffer.concat([qfileHeader(4, QFILE_S_IFREG, 0), Buffer.from('a\0b\0'), END]), /NUL/],
    ['name without NUL', Buffer.concat([qfileHeader(2, QFILE_S_IFREG, 0), Buffer.from('ab'), END]), /NUL/],
    ['huge name', Buffer.concat([qfileHeader(1 << 30, QFILE_S_IFREG, 0)]), /name of \d+ bytes/],
    ['directory with content', Buffer.concat([entry('d', Buffer.from('x'), QFILE_S_IFDIR | 0o755), END]), /directory "d" with 1 bytes/],
    ['path escape', Buffer.concat([entry('../x', Buffer.from('x')), END]), /'\.\.' component/],
    ['absolute path', Buffer.concat([entry('/etc/x', Buffer.from('x')), END]), /relative file path/],
  ];
  for (const [what, input, re] of cases) {
    await assert.rejects(decode(input), (e: Error) => {
      assert.match(e.message, re, what);
      return true;
    }, what);
  }
});
