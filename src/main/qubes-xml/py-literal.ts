// A small, strict parser for the Python literals R2/R3 stored in qubes.xml attributes
// (`services="{'meminfo-writer': True}"`, `pcidevs="['00:19.0']"`): the safe subset of
// `ast.literal_eval` those files use (dict, list, tuple, str, int, True/False/None).
import { fail } from '../errors.js';

export interface PyDict {
  kind: 'dict';
  entries: [PyValue, PyValue][];
}
export type PyValue = null | boolean | number | string | PyValue[] | PyDict;

const MAX_DEPTH = 16;

/** Parse a Python literal; fails with ERR_QUBES_XML on anything else. */
export function parsePyLiteral(src: string, what: string): PyValue {
  let i = 0;
  const bad = (msg: string): never => fail('ERR_QUBES_XML', `qubes.xml: ${what}: ${msg} at offset ${i}`);
  const skip = () => {
    while (i < src.length && /\s/.test(src[i]!)) i++;
  };
  const value = (depth: number): PyValue => {
    if (depth > MAX_DEPTH) bad('nested too deeply');
    skip();
    const c = src[i];
    if (c === undefined) return bad('unexpected end');
    if (c === '{') return dict(depth);
    if (c === '[' || c === '(') return seq(depth, c === '[' ? ']' : ')');
    if (/[-+0-9]/.test(c)) return num();
    const word = /^[A-Za-z_]+/.exec(src.slice(i))?.[0] ?? '';
    if (word === 'True' || word === 'False' || word === 'None') {
      i += word.length;
      return word === 'None' ? null : word === 'True';
    }
    if (/^[uUbBrR]{0,2}['"]/.test(src.slice(i, i + 3))) return str();
    return bad(`unexpected ${JSON.stringify(c)}`);
  };
  const items = (close: string, one: () => void) => {
    i++;
    skip();
    while (src[i] !== close) {
      one();
      skip();
      if (src[i] === ',') {
        i++;
        skip();
      } else if (src[i] !== close) bad(`expected , or ${close}`);
    }
    i++;
  };
  const dict = (depth: number): PyDict => {
    const entries: [PyValue, PyValue][] = [];
    items('}', () => {
      const k = value(depth + 1);
      skip();
      if (src[i] !== ':') bad('expected :');
      i++;
      entries.push([k, value(depth + 1)]);
    });
    return { kind: 'dict', entries };
  };
  const seq = (depth: number, close: string): PyValue[] => {
    const out: PyValue[] = [];
    items(close, () => out.push(value(depth + 1)));
    return out;
  };
  const num = (): number => {
    const m = /^[-+]?[0-9]+[lL]?/.exec(src.slice(i));
    if (!m) return bad('bad number');
    i += m[0].length;
    const n = Number(m[0].replace(/[lL]$/, ''));
    if (!Number.isSafeInteger(n)) bad('number out of range');
    return n;
  };
  const str = (): string => {
    let raw = false;
    while (/[uUbBrR]/.test(src[i]!)) raw = raw || /[rR]/.test(src[i++]!);
    const q = src[i++]!;
    let out = '';
    for (;;) {
      const c = src[i++];
      if (c === undefined || c === '\n') return bad('unterminated string');
      if (c === q) return out;
      if (c !== '\\' || raw) {
        out += c;
        continue;
      }
      const e = src[i++];
      const simple: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v' };
      if (e !== undefined && simple[e] !== undefined) out += simple[e];
      else if (e === 'x' || e === 'u' || e === 'U') {
        const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        const hex = src.slice(i, i + len);
        if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) bad('bad escape');
        const cp = parseInt(hex, 16);
        if (cp > 0x10ffff) bad('bad escape');
        out += String.fromCodePoint(cp);
        i += len;
      } else if (e !== undefined && /[0-7]/.test(e)) {
        const m = /^[0-7]{1,3}/.exec(src.slice(i - 1))![0];
        out += String.fromCharCode(parseInt(m, 8));
        i += m.length - 1;
      } else out += '\\' + (e ?? '');
    }
  };
  const v = value(0);
  skip();
  if (i !== src.length) bad('trailing characters');
  return v;
}

/** Python `str()` of a literal value as the R4 client would store it in a feature ('1'/'' for bools). */
export function featureValue(v: PyValue): string {
  if (v === true) return '1';
  if (v === false || v === null) return '';
  if (typeof v === 'number' || typeof v === 'string') return String(v);
  return JSON.stringify(v);
}
