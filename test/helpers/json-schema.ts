// A small checker of --json messages against the field tables of docs/json.md (no schema library):
// each `### \`type\` (operations)` section's table gives the fields, their types, and `?` for the
// optional ones; `a[].b` / `a.b` rows (to any depth: `a.b[].c`) describe the fields of array
// elements / objects.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Field {
  name: string;
  optional: boolean;
  types: string[];
}

interface Section {
  types: string[];
  operations: string[];
  top: Map<string, Field>;
  /** parent field path (`a`, `a.b`; array elements without `[]`) → its documented children */
  children: Map<string, Map<string, Field>>;
  examples: string[];
}

export class JsonSchema {
  readonly sections: Section[] = [];

  constructor(docPath: string) {
    const lines = readFileSync(docPath, 'utf8').split('\n');
    let cur: Section | undefined;
    let inJson = false;
    for (const line of lines) {
      const h = /^### `(\w+)`(?: and `(\w+)`)? \(([^)]+)\)$/.exec(line);
      if (h) {
        cur = { types: [h[1]!, ...(h[2] ? [h[2]] : [])], operations: h[3]!.split(',').map((s) => s.trim()), top: new Map(), children: new Map(), examples: [] };
        this.sections.push(cur);
        continue;
      }
      if (!cur) continue;
      if (line === '```json') inJson = true;
      else if (line === '```') inJson = false;
      else if (inJson) cur.examples.push(line);
      else {
        const row = /^\| ([A-Za-z0-9_.[\]]+\??) \| ([^|]*(?:\\\|[^|]*)*) \|/.exec(line);
        if (!row || row[1] === 'field') continue;
        const raw = row[1]!;
        const optional = raw.endsWith('?');
        const path = optional ? raw.slice(0, -1) : raw;
        const types = row[2]!.replace(/\\\|/g, '|').split('|').map((s) => s.trim());
        const parts = path.split('.').map((p) => p.replace(/\[\]$/, ''));
        if (parts.length > 1) {
          const parent = parts.slice(0, -1).join('.');
          const name = parts[parts.length - 1]!;
          const kids = cur.children.get(parent) ?? new Map<string, Field>();
          kids.set(name, { name, optional, types });
          cur.children.set(parent, kids);
        } else cur.top.set(path, { name: path, optional, types });
      }
    }
  }

  static fromDocs(root: string): JsonSchema {
    return new JsonSchema(join(root, 'docs/json.md'));
  }

  /** Problems of one message (empty: it matches its section). */
  check(msg: unknown): string[] {
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return ['not an object'];
    const m = msg as Record<string, unknown>;
    const type = m['message_type'];
    const op = m['operation'];
    const s = this.sections.find((x) => x.types.includes(String(type)) && x.operations.includes(String(op)));
    if (!s) return [`no documented message type ${JSON.stringify(type)} for operation ${JSON.stringify(op)}`];
    return checkObject(m, s.top, s.children, `${String(type)}/${String(op)}`);
  }
}

function checkObject(o: Record<string, unknown>, fields: Map<string, Field>, children: Map<string, Map<string, Field>>, where: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const k of Object.keys(o)) if (!fields.has(k)) out.push(`${where}: undocumented field ${k}`);
  for (const f of fields.values()) {
    if (!(f.name in o)) {
      if (!f.optional) out.push(`${where}: missing field ${f.name}`);
      continue;
    }
    const v = o[f.name];
    if (!f.types.some((t) => hasType(v, t))) {
      out.push(`${where}: ${f.name} = ${JSON.stringify(v)} is not ${f.types.join('|')}`);
      continue;
    }
    const path = prefix === '' ? f.name : `${prefix}.${f.name}`;
    const kids = children.get(path);
    const objects = Array.isArray(v) ? v : [v];
    for (const x of objects) {
      if (typeof x !== 'object' || x === null) continue;
      if (kids) out.push(...checkObject(x as Record<string, unknown>, kids, children, `${where}.${f.name}`, path));
      else if (!Array.isArray(x)) {
        // an object without documented fields (settings): a flat map of scalars
        for (const [k, y] of Object.entries(x)) if (y !== null && typeof y === 'object') out.push(`${where}.${f.name}.${k}: not a scalar`);
      }
    }
  }
  return out;
}

function hasType(v: unknown, t: string): boolean {
  if (t.endsWith('[]')) return Array.isArray(v) && v.every((x) => hasType(x, t.slice(0, -2)));
  switch (t) {
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'null':
      return v === null;
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    default:
      throw new Error(`docs/json.md: unknown type ${t}`);
  }
}
