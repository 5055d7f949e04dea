// Untrusted input: DOCTYPE/ENTITY, size cap, malformed XML, encodings and escaping round trips.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseQubesXml, QUBES_XML_MAX_BYTES, serializeQubesXml } from '../../../src/main/qubes-xml/index.js';
import { normalisedTree } from './tree-compare.js';

const code = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code ?? `not a QvmBackupError: ${String(e)}`;
  }
  return 'no error';
};

const r4 = (inner: string, props = '') =>
  `<qubes><labels><label id="label-1" color="0xcc0000">red</label></labels><properties>${props}</properties><domains>${inner}</domains></qubes>`;
const vm = (name: string, extra = '') =>
  `<domain id="domain-3" class="AppVM"><properties><property name="qid">3</property><property name="name">${name}</property><property name="label">label-1</property>${extra}</properties><features/><tags/></domain>`;

describe('qubes.xml parsing refuses unsafe or broken input', () => {
  test('DOCTYPE and ENTITY declarations', () => {
    assert.equal(code(() => parseQubesXml('<!DOCTYPE qubes><qubes/>')), 'ERR_QUBES_XML');
    assert.equal(code(() => parseQubesXml('<?xml version="1.0"?>\n<!doctype qubes [<!ENTITY a "b">]><qubes/>')), 'ERR_QUBES_XML');
    const lol = '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><qubes>&b;</qubes>';
    assert.equal(code(() => parseQubesXml(lol)), 'ERR_QUBES_XML');
    assert.equal(code(() => parseQubesXml('<qubes><!ENTITY x "y"></qubes>')), 'ERR_QUBES_XML');
  });

  test('size cap', () => {
    assert.equal(QUBES_XML_MAX_BYTES, 1024 * 1024);
    const pad = ' '.repeat(QUBES_XML_MAX_BYTES);
    assert.equal(code(() => parseQubesXml(`<qubes/>${pad}`)), 'ERR_TOO_LARGE');
    assert.equal(code(() => parseQubesXml(Buffer.from(`<qubes/>${pad}`))), 'ERR_TOO_LARGE');
    // multi-byte characters count as bytes
    const justOver = '<qubes/>' + 'é'.repeat((QUBES_XML_MAX_BYTES - 8) / 2 + 1);
    assert.equal(code(() => parseQubesXml(justOver)), 'ERR_TOO_LARGE');
    const ok = `<qubes/>${' '.repeat(QUBES_XML_MAX_BYTES - 9)}`;
    assert.equal(parseQubesXml(ok).schema, 'r4');
  });

  test('garbage, malformed and non-XML input', () => {
    for (const bad of [
      '',
      'garbage',
      '<qubes>',
      '<qubes><domains></qubes>',
      '<qubes a="1" a="2"/>',
      '<qubes a=1/>',
      '<qubes a/>',
      '<qubes/><qubes/>',
      'text<qubes/>',
      '<qubes>&unknown;</qubes>',
      '<qubes>&#0;</qubes>',
      '<qubes>&#xD800;</qubes>',
      '<qubes a="&amp"/>',
      '<qubes>\u0001</qubes>',
      '<qubes constructor="x"/>',
      '<qubes a="x<y"/>',
      '<qubes><!-- a -- b --></qubes>',
      '<qubes>a]]>b</qubes>',
      '<html/>',
      '<?xml version="1.0" encoding="ISO-8859-1"?><qubes/>',
      r4(vm('a') + vm('a')),
      r4('<domain class="AppVM"><properties><property name="name">x</property></properties></domain>'),
      r4('<domain id="domain-3"><properties/></domain>'),
    ]) {
      assert.equal(code(() => parseQubesXml(bad)), 'ERR_QUBES_XML', JSON.stringify(bad));
    }
    assert.equal(code(() => parseQubesXml(new Uint8Array([0x3c, 0x71, 0xff, 0x3e]))), 'ERR_QUBES_XML');
    // a file cut short names the elements left open, not the validator's internal list
    assert.throws(() => parseQubesXml('<?xml version="1.0"?>\n<qubes><domains><domain'), /qubes\.xml is malformed: it ends with elements <qubes> > <domains> > <domain> still open \(cut short\?\)$/);
    assert.throws(() => parseQubesXml(' \n'), /^Error: qubes\.xml is empty$|qubes\.xml is empty$/);
    // a deep nest is named in a bounded line
    assert.throws(() => parseQubesXml(`<qubes>${'<a>'.repeat(20_000)}`), (e: Error) => e.message.length < 300 && /<qubes> > <a> > <a> > … 19996 more … > <a> > <a> still open/.test(e.message));
  });

  test('R2/R3 structural errors', () => {
    assert.equal(code(() => parseQubesXml('<QubesVmCollection><QubesAppVm name="a" qid="x"/></QubesVmCollection>')), 'ERR_QUBES_XML');
    assert.equal(code(() => parseQubesXml('<QubesVmCollection><QubesAppVm qid="3"/></QubesVmCollection>')), 'ERR_QUBES_XML');
    assert.equal(code(() => parseQubesXml('<QubesVmCollection><QubesAppVm name="a" qid="3"/><QubesAppVm name="b" qid="3"/></QubesVmCollection>')), 'ERR_QUBES_XML');
    assert.equal(code(() => parseQubesXml('<QubesVmCollection><QubesAppVm name="a" qid="3"/><QubesNetVm name="a" qid="4"/></QubesVmCollection>')), 'ERR_QUBES_XML');
    assert.equal(code(() => parseQubesXml('<QubesVmCollection><QubesAppVm name="a" qid="3" template_qid="9"/></QubesVmCollection>')), 'ERR_QUBES_XML');
    assert.equal(code(() => parseQubesXml(`<QubesVmCollection><QubesAppVm name="a" qid="3" template_qid="none" services="{'a': __import__('os')}"/></QubesVmCollection>`)), 'ERR_QUBES_XML');
    assert.equal(code(() => parseQubesXml('<QubesVmCollection><QubesAppVm name="a" qid="3" template_qid="none" backup_content="True" backup_size="12x"/></QubesVmCollection>')), 'ERR_QUBES_XML');
  });

  test('an invalid backup size of an included R4 VM is refused', () => {
    const f = '<features><feature name="backup-content">1</feature><feature name="backup-size">-5</feature></features>';
    const xml = r4(vm('a').replace('<features/>', f));
    assert.equal(code(() => parseQubesXml(xml)), 'ERR_QUBES_XML');
    // not included: tolerated, size unknown
    const d = parseQubesXml(xml.replace('>1</feature>', '></feature>')).domains.find((x) => x.name === 'a')!;
    assert.deepEqual(d.backup, { content: false });
  });

  test('BOM and UTF-8 bytes', () => {
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(r4(vm('caf\u00e9-x')), 'utf8')]);
    const doc = parseQubesXml(bytes);
    assert.equal(doc.domains[0]!.name, 'caf\u00e9-x');
  });
});

describe('escaping round trips', () => {
  const xml =
    `<?xml version='1.0' encoding='UTF-8'?>\n<!-- a comment -->\n` +
    r4(
      vm('v', `<property name="kernelopts">x &amp; y &#x263a; &#65;&lt;&gt;&quot;&apos; ]]&gt;</property>`).replace(
        '<features/>',
        `<features><feature name="attr &amp; &#10;test">raw<![CDATA[<not markup> & ]]>end</feature></features>`,
      ),
      `<property name="multi">line1\r\nline2</property>`,
    ).replace('<qubes>', `<qubes note='single "quoted"' ws="a\tb\nc &#9;d">`);

  test('references are decoded in the model', () => {
    const doc = parseQubesXml(xml);
    const d = doc.domains.find((x) => x.name === 'v')!;
    assert.equal(d.properties['kernelopts'], `x & y \u263a A<>"' ]]>`);
    assert.equal(d.features['attr & \ntest'], 'raw<not markup> & end');
    assert.equal(doc.globalProperties['multi'], 'line1\nline2');
  });

  test('serialising keeps every value and the comment', () => {
    const doc = parseQubesXml(xml);
    const out = serializeQubesXml(doc);
    assert.deepEqual(parseQubesXml(out), doc);
    assert.deepEqual(normalisedTree(out), normalisedTree(xml.replace('\r\n', '\n')));
    assert.match(out, /<!-- a comment -->/);
    assert.match(out, /^<\?xml version="1.0" encoding="UTF-8"\?>\n/);
    // attribute whitespace normalisation: literal TAB/LF become spaces, &#9; stays a TAB
    assert.match(out, /ws="a b c &#9;d"|ws="a\tb\nc &#9;d"/);
  });

  test('values written by the module are escaped', async () => {
    const { addRestoredDomain, findDomain, restoreWarningsOf } = await import('../../../src/main/qubes-xml/index.js');
    const { r4Xml } = await import('../restore/sample-xml.js');
    const doc = parseQubesXml(xml.replace('<features>', '<features><feature name="ok">raw<![CDATA[<not markup> & ]]>end</feature>'));
    const host = parseQubesXml(r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 1 }]));
    addRestoredDomain(host, findDomain(doc, 'v')!, { newName: 'v2', renames: new Map([['v', 'v2']]), hostDefaults: { template: 'tpl' } });
    const out = serializeQubesXml(host);
    const back = findDomain(parseQubesXml(out), 'v2')!;
    assert.equal(back.properties['kernelopts'], `x & y \u263a A<>"' ]]>`);
    assert.equal(back.features['ok'], 'raw<not markup> & end');
    // a feature name with a control character is not carried
    assert.equal(back.features['attr & \ntest'], undefined);
    assert.match(restoreWarningsOf(host, 'v2')!.join('\n'), /feature "attr & \\ntest" not restored: invalid name/);
  });
});
