// The real qubes.xml of every Qubes-made fixture: parsed like the Qubes R4 restore client parsed
// it (oracle qubes.json), and written back unchanged.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  legacyDispvmTemplates,
  legacyR4Properties,
  parseQubesXml,
  serializeQubesXml,
  type DomainInfo,
  type QubesXml,
} from '../../../src/main/qubes-xml/index.js';
import { FIXTURE_DIR, fixtureFormat, fixtureNames, fixtureQubesXml, haveScrypt, oracleQubes, type OracleDomain } from './fixture-xml.js';
import { normalisedTree } from './tree-compare.js';

const names = fixtureNames();
const scrypt = haveScrypt();

const norm = (v: unknown): unknown => (v === true ? 'True' : v === false ? 'False' : v === null ? '' : v);
const normFeature = (v: unknown): unknown => (v === true ? '1' : v === false ? '' : v);
const without = (o: Record<string, unknown>, keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
const mapValues = (o: Record<string, unknown>, f: (v: unknown) => unknown) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));

/** What the R4 client would list as domains: R2/R3 DisposableVMs dropped, synthetic DVM templates added. */
function clientView(doc: QubesXml): DomainInfo[] {
  return [...doc.domains.filter((d) => d.legacyClass !== 'QubesDisposableVm'), ...legacyDispvmTemplates(doc)];
}

function expectedProperties(doc: QubesXml, d: DomainInfo): Record<string, unknown> {
  if (doc.schema === 'r4') return without(d.properties, ['name', 'label', 'template', 'uuid', 'qid']);
  if (d.qid === -1) return { ...d.properties, netvm: d.netvm ?? '' };
  const p: Record<string, unknown> = { ...legacyR4Properties(d) };
  if (d.netvm !== undefined) p['netvm'] = d.netvm ?? '';
  if (d.defaultDispvm !== undefined) p['default_dispvm'] = d.defaultDispvm ?? '';
  return p;
}

function compareWithOracle(doc: QubesXml, oracle: { domains: Record<string, OracleDomain>; globals: Record<string, string | null> }) {
  const view = clientView(doc);
  assert.deepEqual(view.map((d) => d.name).sort(), Object.keys(oracle.domains).sort());
  for (const d of view) {
    const o = oracle.domains[d.name]!;
    const ctx = `VM ${d.name}`;
    assert.equal(d.klass, o.klass, ctx);
    assert.equal(d.label, o.label, ctx);
    assert.equal(d.template ?? null, o.template, ctx);
    if ('netvm' in o.properties) assert.equal(d.netvm, o.properties['netvm'], ctx);
    else assert.equal(d.netvm, undefined, ctx);
    const included = d.backup?.content ?? false;
    assert.equal(included, o.included_in_backup, ctx);
    if (included || doc.schema === 'r2r3') assert.equal(d.backup?.path ?? null, o.backup_path, ctx);
    assert.equal(included || doc.schema === 'r2r3' ? (d.backup?.size ?? 0) : 0, Number(o.size), ctx);
    const feats = without(d.features, ['backup-content', 'backup-path', 'backup-size']);
    assert.deepEqual(feats, mapValues(without(o.features, ['backup-content', 'backup-path', 'backup-size']), normFeature), ctx);
    assert.deepEqual([...d.tags].sort(), [...o.tags].sort(), ctx);
    const devs = Object.fromEntries(d.devices.map((x) => [`${x.bus}:${x.backend}+${x.port}`, x.options]));
    const odevs: Record<string, unknown> = {};
    for (const [bus, m] of Object.entries(o.devices)) for (const [k, v] of Object.entries(m)) odevs[`${bus}:${k}`] = without(v as Record<string, unknown>, ['required']);
    assert.deepEqual(devs, odevs, ctx);
    assert.deepEqual(mapValues(expectedProperties(doc, d), norm), mapValues(o.properties, norm), ctx);
  }
  for (const [k, v] of Object.entries(oracle.globals)) assert.equal(doc.globalProperties[k], v ?? '', `global ${k}`);
}

describe('qubes.xml of the Qubes-made fixtures', () => {
  test('there are 9 fixtures', { skip: names.length === 0 ? `no fixtures in ${FIXTURE_DIR}` : false }, () => {
    assert.equal(names.length, 9);
  });

  for (const name of names) {
    test(name, (t) => {
      if (fixtureFormat(name) === 4 && !scrypt) {
        t.skip('scrypt CLI not installed');
        return;
      }
      const xml = fixtureQubesXml(name);
      const doc = parseQubesXml(xml);
      assert.equal(doc.schema, fixtureFormat(name) === 4 ? 'r4' : 'r2r3');

      const oracle = oracleQubes(name);
      if (oracle) compareWithOracle(doc, oracle);
      else {
        // format 2 (restored by the R3.2 code): the backed-up dirs the oracle restore found
        const exp = JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, `${name}.expected.json`), 'utf8')) as {
          oracle_restore_result: { vms_dirs: string[] };
        };
        const dirs = doc.domains.filter((d) => d.backup?.content).map((d) => d.backup!.path!.split('/')[0]!);
        assert.deepEqual(dirs.sort(), [...exp.oracle_restore_result.vms_dirs].sort());
      }

      // round trip: same model, and the same document content
      const out = serializeQubesXml(doc);
      assert.deepEqual(parseQubesXml(out), doc);
      assert.deepEqual(normalisedTree(out), normalisedTree(xml));
      assert.equal(serializeQubesXml(parseQubesXml(out)), out, 'serialising is stable');
    });
  }
});
