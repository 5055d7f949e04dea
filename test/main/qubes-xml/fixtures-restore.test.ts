// Every VM included in each Qubes-made fixture restores into the oracle's host (templates first),
// the host document written afterwards reads back the same and loads as Qubes R4 would, and
// everything Qubes' own restore set (the oracle's events.json: classes, templates, properties,
// features, tags) is there; device assignments of dom0 are reported instead of carried.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  addRestoredDomain,
  emptyR4Host,
  findDomain,
  legacyDispvmTemplates,
  parseQubesXml,
  restoreWarningsOf,
  serializeQubesXml,
  validateHostCollection,
  hasTemplate,
  type DomainInfo,
  type QubesXml,
} from '../../../src/main/qubes-xml/index.js';
import { FIXTURE_DIR, fixtureFormat, fixtureNames, fixtureQubesXml, haveScrypt } from './fixture-xml.js';
import { oracleHostXml } from './samples.js';

interface OracleEvent {
  op: string;
  vm?: string;
  name?: string;
  klass?: string;
  label?: string;
  template?: string | null;
  value?: unknown;
  tag?: string;
  bus?: string;
  backend?: string;
  port_id?: string;
}

/** Qubes' values as qubes.xml stores them: True → '1' (features) or 'True' (properties), None/False → ''. */
function stored(v: unknown, feature: boolean): string {
  if (v === true) return feature ? '1' : 'True';
  if (v === false || v === null) return '';
  return String(v);
}

/** The metadata events of the oracle restore (before it started importing data). */
function metadataEvents(fixture: string): OracleEvent[] | undefined {
  const file = path.join(FIXTURE_DIR, `${fixture}.oracle`, 'events.json');
  if (!fs.existsSync(file)) return undefined;
  const all = JSON.parse(fs.readFileSync(file, 'utf8')) as OracleEvent[];
  const last = all.map((e) => e.op).lastIndexOf('property.set');
  return all.slice(0, last + 1);
}

function checkAgainstOracle(host: QubesXml, events: OracleEvent[]): void {
  for (const e of events) {
    const d = findDomain(host, e.vm ?? e.name ?? '');
    const what = JSON.stringify(e);
    assert.ok(d, `${what}: VM missing`);
    if (e.op === 'vm.create') {
      assert.equal(d.klass, e.klass, what);
      if (host.labels.some((l) => l.name === e.label)) assert.equal(d.label, e.label, what);
      // no template given: Qubes creates an AppVM on the host's default template
      assert.equal(d.template ?? null, e.template ?? (hasTemplate(d.klass) ? 'default-template' : null), what);
    } else if (e.op === 'property.set') {
      const mine = e.name === 'netvm' ? d.netvm : e.name === 'default_dispvm' ? d.defaultDispvm : d.properties[e.name!];
      assert.equal(mine === null ? '' : mine, stored(e.value, false), what);
    } else if (e.op === 'feature.set') {
      assert.equal(d.features[e.name!], stored(e.value, true), what);
    } else if (e.op === 'tag.add') {
      assert.ok(d.tags.includes(e.tag!), what);
    } else if (e.op === 'device.assign') {
      assert.equal(d.devices.length, 0, what);
      assert.ok(restoreWarningsOf(host, d.name)?.some((w) => w.startsWith(`device "${e.bus}:${e.backend}:${e.port_id}" not restored`)), what);
    }
  }
}

/** `vms` ordered so that each comes after the VMs of the list it references (as the restore installs them). */
function installOrder(vms: DomainInfo[]): DomainInfo[] {
  const names = new Set(vms.map((d) => d.name));
  const out: DomainInfo[] = [];
  const placed = new Set<string>();
  const left = [...vms];
  while (left.length > 0) {
    const i = left.findIndex((d) => [d.template, d.netvm, d.defaultDispvm].every((r) => typeof r !== 'string' || r === d.name || !names.has(r) || placed.has(r)));
    assert.ok(i >= 0, 'reference cycle among the fixture VMs');
    const [d] = left.splice(i, 1);
    out.push(d!);
    placed.add(d!.name);
  }
  return out;
}

describe('every included VM of every fixture restores into the oracle host', () => {
  const scrypt = haveScrypt();
  for (const name of fixtureNames()) {
    test(name, (t) => {
      if (fixtureFormat(name) === 4 && !scrypt) return t.skip('scrypt CLI not installed');
      const src = parseQubesXml(fixtureQubesXml(name));
      const vms = installOrder([...src.domains, ...legacyDispvmTemplates(src)].filter((d) => d.klass !== 'AdminVM' && d.backup?.content));
      const host: QubesXml = parseQubesXml(oracleHostXml(serializeQubesXml(emptyR4Host())));
      const renames = new Map(vms.map((d) => [d.name, d.name]));
      for (const d of vms) addRestoredDomain(host, d, { newName: d.name, renames, hostDefaults: { template: 'default-template' } });
      const back = parseQubesXml(serializeQubesXml(host));
      assert.deepEqual(back, host);
      assert.deepEqual(validateHostCollection(back), []);
      assert.deepEqual(back.domains.map((d) => d.qid), [0, 1, 2, ...vms.map((_, i) => i + 3)]);
      for (const d of back.domains.slice(3)) {
        assert.ok(d.volumes.some((v) => v.name === 'private' && v.vid === `${d.klass === 'TemplateVM' ? 'vm-templates' : 'appvms'}/${d.name}/private`), `${name}: ${d.name} private volume`);
        assert.equal(d.backup, undefined);
      }
      const events = metadataEvents(name);
      if (events !== undefined) checkAgainstOracle(host, events);
      // nothing else than devices is dropped from a Qubes-made backup
      for (const d of vms) assert.deepEqual(restoreWarningsOf(host, d.name)!.filter((w) => !w.startsWith('device ')), [], d.name);
      return undefined;
    });
  }
});
