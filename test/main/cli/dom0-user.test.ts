import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { defaultDom0Home, qubesUserHome } from '../../../src/main/cli/dom0-user.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:User:/home/user:/bin/bash\nother:x:1001:1001::/home/other:/bin/sh\n';

describe('the default dom0 home, as Qubes finds it', () => {
  it('is the home of the first member of group qubes', () => {
    assert.equal(qubesUserHome('wheel:x:10:user\nqubes:x:98:user,other\n', PASSWD), '/home/user');
    assert.equal(qubesUserHome('qubes:x:98:other,user\n', PASSWD), '/home/other');
  });
  it('is nothing without the group, a member, the user or an absolute home', () => {
    assert.equal(qubesUserHome('wheel:x:10:user\n', PASSWD), undefined);
    assert.equal(qubesUserHome('qubes:x:98:\n', PASSWD), undefined);
    assert.equal(qubesUserHome('qubes:x:98:ghost\n', PASSWD), undefined);
    assert.equal(qubesUserHome('qubes:x:98:odd\n', 'odd:x:5:5::relative:/bin/sh\n'), undefined);
  });
  it('falls back to $HOME (also when the files cannot be read)', () => {
    const d = mkdtempSync(path.join(tmpdir(), 'dom0-user-'));
    try {
      writeFileSync(path.join(d, 'group'), 'qubes:x:98:user\n');
      writeFileSync(path.join(d, 'passwd'), PASSWD);
      assert.equal(defaultDom0Home({ group: path.join(d, 'group'), passwd: path.join(d, 'passwd') }), '/home/user');
      writeFileSync(path.join(d, 'group'), 'wheel:x:10:user\n');
      assert.equal(defaultDom0Home({ group: path.join(d, 'group'), passwd: path.join(d, 'passwd') }), homedir());
      assert.equal(defaultDom0Home({ group: path.join(d, 'missing'), passwd: path.join(d, 'passwd') }), homedir());
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
