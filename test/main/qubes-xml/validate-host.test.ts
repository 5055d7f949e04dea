// validateHostCollection finds what would stop Qubes R4 from loading a host qubes.xml, or make it
// load something else than the model shows: each case is a valid host with one hostile change.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { emptyR4Host, parseQubesXml, serializeQubesXml, validateHostCollection } from '../../../src/main/qubes-xml/index.js';
import { oracleHostXml } from './samples.js';

const prop = (n: string, v: string) => `<property name="${n}">${v}</property>`;
const vol = (name: string, vid: string, extra = '') => `<volume name="${name}" pool="varlibqubes" rw="True" ${extra} vid="${vid}"/>`;

/** A domain of the host (qid 5, AppVM `x` on default-template unless changed). */
function dom(o: { klass?: string; props?: string; inside?: string; name?: string; qid?: string } = {}): string {
  const klass = o.klass ?? 'AppVM';
  const name = o.name ?? 'x';
  const tpl = klass === 'AppVM' ? prop('template', 'default-template') : '';
  return `<domain id="domain-5" class="${klass}"><properties>${prop('label', 'label-1')}${prop('name', name)}${prop('qid', o.qid ?? '5')}${tpl}${o.props ?? ''}</properties>${o.inside ?? ''}</domain>`;
}

const base = () => oracleHostXml(serializeQubesXml(emptyR4Host()));
const problems = (domains: string) => validateHostCollection(parseQubesXml(base().replace('</domains>', `${domains}</domains>`)));

describe('validateHostCollection', () => {
  test('a valid host has no problems', () => {
    assert.deepEqual(problems(''), []);
    assert.deepEqual(problems(dom({ inside: `<volume-config>${vol('root', 'appvms/x/root', 'snap_on_start="True" source="vm-templates/default-template/root"')}${vol('private', 'appvms/x/private', 'save_on_stop="True"')}</volume-config>` })), []);
  });

  const cases: [string, string, RegExp][] = [
    ['a second properties section', dom({ inside: `<properties>${prop('qid', '0')}</properties>` }), /2 <properties> sections/],
    ['a property set twice', dom({ props: prop('qid', '0') }), /property "qid" set twice/],
    ['a ref attribute', dom({ props: '<property name="netvm" ref="default-dvm"/>' }), /property "netvm" has a ref attribute/],
    ['an unknown element', dom({ inside: '<firewall/>' }), /unexpected element <firewall>/],
    ['an unknown class', dom({ klass: 'EvilVM' }), /unknown class "EvilVM"/],
    ['a qid used twice', dom({ qid: '2' }), /qid 2 also used by default-dvm/],
    ['qid 0 on a VM', dom({ qid: '0' }), /invalid qid 0/],
    ['a label the host lacks', dom().replace(prop('label', 'label-1'), prop('label', 'label-99')), /label "label-99" is not a label of this host/],
    ['an AppVM as template', dom().replace('default-template', 'default-dvm'), /template default-dvm is an AppVM, which cannot be the template of an AppVM/],
    ['a missing template', dom().replace('default-template', 'gone'), /template "gone" does not exist/],
    ['its own template', dom().replace('default-template', 'x'), /template x is an AppVM/],
    ['no template', dom().replace(prop('template', 'default-template'), ''), /AppVM without a template/],
    ['a template on a StandaloneVM', dom({ klass: 'StandaloneVM', props: prop('template', 'default-template') }), /a StandaloneVM has no template property/],
    ['a DispVM on a non-disposable template', dom({ klass: 'DispVM', props: prop('template', 'default-template') }), /template default-template is a TemplateVM, which cannot be the template of a DispVM/],
    ['a netvm without network', dom({ props: prop('netvm', 'default-dvm') }), /netvm default-dvm does not provide network/],
    ['its own netvm', dom({ props: prop('netvm', 'x') + prop('provides_network', 'True') }), /netvm loop/],
    ['a default_dispvm that is no disposable template', dom({ props: prop('default_dispvm', 'default-template') }), /default_dispvm default-template is not a disposable template/],
    ['a device of a missing backend', dom({ inside: '<devices class="pci"><device backend-domain="gone" id="00_1f.2"/></devices>' }), /device backend "gone" does not exist/],
    ['a vid of another VM', dom({ inside: `<volume-config>${vol('private', 'appvms/victim/private', 'save_on_stop="True"')}</volume-config>` }), /vid "appvms\/victim\/private" is not in the VM's own directory/],
    ['a vid with ..', dom({ inside: `<volume-config>${vol('private', 'appvms/x/../victim/private')}</volume-config>` }), /is not in the VM's own directory/],
    ['a volume name outside the fixed set', dom({ inside: `<volume-config>${vol('../../victim/private', 'appvms/x/../../victim/private')}</volume-config>` }), /not a volume name Qubes uses/],
    ['a source of another VM', dom({ inside: `<volume-config>${vol('root', 'appvms/x/root', 'snap_on_start="True" source="appvms/victim/private"')}</volume-config>` }), /source "appvms\/victim\/private" is not its template's root volume/],
    ['a pool the host lacks', dom({ inside: '<volume-config><volume name="private" pool="evil" vid="appvms/x/private"/></volume-config>' }), /pool "evil" is not a pool of this host/],
    ['a kernel vid with a slash', dom({ inside: '<volume-config><volume name="kernel" pool="linux-kernel" vid="../../boot"/></volume-config>' }), /volume "kernel": not a kernel volume/],
    ['a volume defined twice', dom({ inside: `<volume-config>${vol('private', 'appvms/x/private')}${vol('private', 'appvms/x/private')}</volume-config>` }), /volume "private" defined twice/],
  ];
  for (const [what, xml, re] of cases) {
    test(what, () => {
      const found = problems(xml);
      assert.ok(found.some((p) => re.test(p)), `${what}: ${JSON.stringify(found)}`);
    });
  }

  test('a name used twice does not even parse', () => {
    assert.throws(() => problems(dom({ name: 'default-dvm' })), { code: 'ERR_QUBES_XML', message: /duplicate VM name default-dvm/ });
  });

  test('a netvm loop across VMs', () => {
    const a = dom({ name: 'a', qid: '5', props: prop('netvm', 'b') + prop('provides_network', 'True') });
    const b = dom({ name: 'b', qid: '6', props: prop('netvm', 'a') + prop('provides_network', 'True') }).replace('domain-5', 'domain-6');
    assert.deepEqual(problems(a + b), ['VM a: netvm loop', 'VM b: netvm loop']);
  });

  test('an R2/R3 collection is not an R4 one', () => {
    assert.deepEqual(validateHostCollection(parseQubesXml('<QubesVmCollection/>')), ['not an R4 qubes.xml (root <QubesVmCollection>)']);
  });
});
