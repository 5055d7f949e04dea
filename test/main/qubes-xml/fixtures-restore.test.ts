// Every VM included in each Qubes-made fixture restores into an empty R4 host (templates first),
// and the host document written afterwards reads back the same.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addRestoredDomain,
  emptyR4Host,
  legacyDispvmTemplates,
  parseQubesXml,
  serializeQubesXml,
  type DomainInfo,
  type QubesXml,
} from '../../../src/main/qubes-xml/index.js';
import { fixtureFormat, fixtureNames, fixtureQubesXml, haveScrypt } from './fixture-xml.js';

describe('every included VM of every fixture restores into an empty R4 host', () => {
  const scrypt = haveScrypt();
  const order = (d: DomainInfo) => (d.klass === 'TemplateVM' ? 0 : d.properties['template_for_dispvms'] === 'True' ? 1 : 2);
  for (const name of fixtureNames()) {
    test(name, (t) => {
      if (fixtureFormat(name) === 4 && !scrypt) return t.skip('scrypt CLI not installed');
      const src = parseQubesXml(fixtureQubesXml(name));
      const vms = [...src.domains, ...legacyDispvmTemplates(src)].filter((d) => d.klass !== 'AdminVM' && d.backup?.content);
      vms.sort((a, b) => order(a) - order(b));
      const host: QubesXml = emptyR4Host();
      const renames = new Map(vms.map((d) => [d.name, d.name]));
      for (const d of vms) addRestoredDomain(host, d, { newName: d.name, renames, hostDefaults: { template: 'dom0' } });
      const back = parseQubesXml(serializeQubesXml(host));
      assert.deepEqual(back, host);
      assert.deepEqual(back.domains.map((d) => d.qid), [0, ...vms.map((_, i) => i + 1)]);
      for (const d of back.domains.slice(1)) {
        assert.ok(d.volumes.some((v) => v.name === 'private' && v.vid?.includes(`/${d.name}/`)), `${name}: ${d.name} private volume`);
        assert.equal(d.backup, undefined);
      }
      return undefined;
    });
  }
});
