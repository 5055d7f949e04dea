#!/usr/bin/env node
// Makes src/workers/scrypt-romix-wasm.ts: the WebAssembly module (SIMD) of scrypt's memory-hard
// step, ROMix with BlockMix over Salsa20/8 (RFC 7914 §3–5), as base64. The module is written below
// in the WebAssembly text format and assembled with wabt (a devDependency); the generated file is
// committed, so neither the build nor a run needs wabt. `--check` (the test suite) fails when the
// committed file is not what this script makes.
//
// Lane order. Each 64-byte Salsa20 block (16 little-endian words x0..x15) is held in the module's
// memory, and in four v128 registers, permuted so that the four quarter-rounds of a column round
// run lane-parallel:
//   s0 = (x0, x5, x10, x15)   the diagonal: the "a" word of each column's quarter-round
//   s1 = (x12, x1, x6, x11)   "d"
//   s2 = (x8, x13, x2, x7)    "c"
//   s3 = (x4, x9, x14, x3)    "b"
// A row round needs b, c, d taken one, two and three lanes further: rotate s1, s2, s3 by 1, 2, 3
// lanes, run the same four steps with b and d swapped, and rotate back. XOR and copies are lane-wise,
// so ROMix runs on permuted blocks throughout (the JS side permutes B in and out), and Integerify's
// word x0 of the last block stays at offset 0 of that block.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const OUT = fileURLToPath(new URL('../src/workers/scrypt-romix-wasm.ts', import.meta.url));

/** i8x16.shuffle taking lane (i + k) % 4 into lane i. */
function rotateLanes(v, k) {
  const bytes = [];
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) bytes.push(4 * ((i + k) % 4) + j);
  return `(i8x16.shuffle ${bytes.join(' ')} (local.get ${v}) (local.get ${v}))`;
}

/** dst ^= rotl32(a + b, n), lane-wise. */
function step(dst, a, b, n) {
  return [
    `(local.set $t (i32x4.add (local.get ${a}) (local.get ${b})))`,
    `(local.set ${dst} (v128.xor (local.get ${dst}) (v128.or (i32x4.shl (local.get $t) (i32.const ${n})) (i32x4.shr_u (local.get $t) (i32.const ${32 - n})))))`,
  ];
}

/** One Salsa20 double round (a column round, then a row round) on s0..s3. */
function doubleRound() {
  return [
    // column round: b ^= (a+d)<<<7, c ^= (b+a)<<<9, d ^= (c+b)<<<13, a ^= (d+c)<<<18
    ...step('$s3', '$s0', '$s1', 7),
    ...step('$s2', '$s3', '$s0', 9),
    ...step('$s1', '$s2', '$s3', 13),
    ...step('$s0', '$s1', '$s2', 18),
    `(local.set $s1 ${rotateLanes('$s1', 1)})`,
    `(local.set $s2 ${rotateLanes('$s2', 2)})`,
    `(local.set $s3 ${rotateLanes('$s3', 3)})`,
    // row round: now s1 holds each row's second word, s3 its fourth
    ...step('$s1', '$s0', '$s3', 7),
    ...step('$s2', '$s1', '$s0', 9),
    ...step('$s3', '$s2', '$s1', 13),
    ...step('$s0', '$s3', '$s2', 18),
    `(local.set $s1 ${rotateLanes('$s1', 3)})`,
    `(local.set $s2 ${rotateLanes('$s2', 2)})`,
    `(local.set $s3 ${rotateLanes('$s3', 1)})`,
  ].join('\n        ');
}

/** The module's text. Addresses are byte offsets in its memory; r >= 1, n a power of two >= 2. */
export function romixWat() {
  const load4 = (dst, p, xor) =>
    [0, 1, 2, 3].map((k) => (xor ? `(local.set ${dst}${k} (v128.xor (local.get ${dst}${k}) (v128.load offset=${16 * k} (local.get ${p}))))` : `(local.set ${dst}${k} (v128.load offset=${16 * k} (local.get ${p})))`)).join('\n      ');
  return `(module
  (memory (export "memory") 1 65536)
  ;; BlockMix_salsa20/8 of the 2r blocks at $in into $out (disjoint)
  (func $blockMix (param $in i32) (param $out i32) (param $r i32)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local $o0 v128) (local $o1 v128) (local $o2 v128) (local $o3 v128) (local $t v128)
    (local $i i32) (local $blocks i32) (local $p i32) (local $q i32) (local $k i32)
    (local.set $blocks (i32.shl (local.get $r) (i32.const 1)))
    ;; X = the last block
    (local.set $p (i32.add (local.get $in) (i32.shl (i32.sub (local.get $blocks) (i32.const 1)) (i32.const 6))))
    ${load4('$s', '$p', false)}
    (loop $each
      (local.set $p (i32.add (local.get $in) (i32.shl (local.get $i) (i32.const 6))))
      ${load4('$s', '$p', true)}
      (local.set $o0 (local.get $s0)) (local.set $o1 (local.get $s1)) (local.set $o2 (local.get $s2)) (local.set $o3 (local.get $s3))
      (local.set $k (i32.const 4))
      (loop $rounds
        ${doubleRound()}
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br_if $rounds (local.get $k)))
      (local.set $s0 (i32x4.add (local.get $s0) (local.get $o0)))
      (local.set $s1 (i32x4.add (local.get $s1) (local.get $o1)))
      (local.set $s2 (i32x4.add (local.get $s2) (local.get $o2)))
      (local.set $s3 (i32x4.add (local.get $s3) (local.get $o3)))
      ;; block i goes to i/2 when i is even, to r + (i-1)/2 when odd
      (local.set $q (i32.add (local.get $out) (i32.shl (i32.add (i32.shr_u (local.get $i) (i32.const 1)) (i32.mul (i32.and (local.get $i) (i32.const 1)) (local.get $r))) (i32.const 6))))
      (v128.store offset=0 (local.get $q) (local.get $s0))
      (v128.store offset=16 (local.get $q) (local.get $s1))
      (v128.store offset=32 (local.get $q) (local.get $s2))
      (v128.store offset=48 (local.get $q) (local.get $s3))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $i) (local.get $blocks)))))
  ;; $dst ^= $src over $len bytes (a multiple of 64)
  (func $xorInto (param $dst i32) (param $src i32) (param $len i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $dst) (local.get $len)))
    (loop $each
      (v128.store offset=0 (local.get $dst) (v128.xor (v128.load offset=0 (local.get $dst)) (v128.load offset=0 (local.get $src))))
      (v128.store offset=16 (local.get $dst) (v128.xor (v128.load offset=16 (local.get $dst)) (v128.load offset=16 (local.get $src))))
      (v128.store offset=32 (local.get $dst) (v128.xor (v128.load offset=32 (local.get $dst)) (v128.load offset=32 (local.get $src))))
      (v128.store offset=48 (local.get $dst) (v128.xor (v128.load offset=48 (local.get $dst)) (v128.load offset=48 (local.get $src))))
      (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (br_if $each (i32.lt_u (local.get $dst) (local.get $end)))))
  ;; ROMix of the 128r bytes at $b, in place. $x, $y: 128r bytes of scratch each; $v: 128r*$n bytes.
  ;; Two BlockMix steps per iteration, X -> Y -> X, so nothing is copied between them
  (func (export "romix") (param $b i32) (param $x i32) (param $y i32) (param $v i32) (param $r i32) (param $n i32)
    (local $len i32) (local $i i32) (local $w i32) (local $last i32) (local $mask i32)
    (local.set $len (i32.shl (local.get $r) (i32.const 7)))
    (local.set $last (i32.shl (i32.sub (i32.shl (local.get $r) (i32.const 1)) (i32.const 1)) (i32.const 6)))
    (local.set $mask (i32.sub (local.get $n) (i32.const 1)))
    (memory.copy (local.get $x) (local.get $b) (local.get $len))
    (local.set $w (local.get $v))
    (local.set $i (i32.shr_u (local.get $n) (i32.const 1)))
    (loop $fill
      (memory.copy (local.get $w) (local.get $x) (local.get $len))
      (call $blockMix (local.get $x) (local.get $y) (local.get $r))
      (local.set $w (i32.add (local.get $w) (local.get $len)))
      (memory.copy (local.get $w) (local.get $y) (local.get $len))
      (call $blockMix (local.get $y) (local.get $x) (local.get $r))
      (local.set $w (i32.add (local.get $w) (local.get $len)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $fill (local.get $i)))
    (local.set $i (i32.shr_u (local.get $n) (i32.const 1)))
    (loop $mix
      ;; j = Integerify(X) mod n: the first word of X's last block
      (call $xorInto (local.get $x) (i32.add (local.get $v) (i32.mul (i32.and (i32.load (i32.add (local.get $x) (local.get $last))) (local.get $mask)) (local.get $len))) (local.get $len))
      (call $blockMix (local.get $x) (local.get $y) (local.get $r))
      (call $xorInto (local.get $y) (i32.add (local.get $v) (i32.mul (i32.and (i32.load (i32.add (local.get $y) (local.get $last))) (local.get $mask)) (local.get $len))) (local.get $len))
      (call $blockMix (local.get $y) (local.get $x) (local.get $r))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $mix (local.get $i)))
    (memory.copy (local.get $b) (local.get $x) (local.get $len)))
)
`;
}

async function assemble() {
  const wabt = await (await import('wabt')).default();
  const m = wabt.parseWat('scrypt-romix.wat', romixWat(), { simd: true, bulk_memory: true });
  try {
    m.validate();
    return Buffer.from(m.toBinary({}).buffer);
  } finally {
    m.destroy();
  }
}

function source(wasm) {
  const b64 = wasm.toString('base64');
  const lines = [];
  for (let i = 0; i < b64.length; i += 96) lines.push(`  '${b64.slice(i, i + 96)}'`);
  return `// Generated by scripts/scrypt-wasm.mjs (the module's text and how it works are there): do not edit.
/** scrypt's ROMix (SIMD), a WebAssembly module, base64. */
export const ROMIX_WASM_BASE64 =
${lines.join(' +\n')};
`;
}

const want = source(await assemble());
if (process.argv.includes('--check')) {
  let have = '';
  try {
    have = readFileSync(OUT, 'utf8');
  } catch {
    // missing: differs
  }
  if (have !== want) {
    console.error(`${OUT} is not what scripts/scrypt-wasm.mjs makes: run node scripts/scrypt-wasm.mjs`);
    process.exit(1);
  }
} else {
  writeFileSync(OUT, want);
  console.log(`wrote ${OUT}`);
}
