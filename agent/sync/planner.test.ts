import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { syncPolicySchema, type SyncPolicy } from '../../core/config/sync-policy.js';
import type { CloudImage, DriverCapabilities } from '../../core/iaas/port.js';
import { applyChanges, newImage } from '../../core/image/image.js';
import type { Image, ImageDraft } from '../../core/image/model.js';
import { apply, cloudCopy, fakeSha, type World } from '../../test/support/simulated-cloud.js';
import { ORIGIN_ID, ORIGIN_TARGET } from './desired.js';
import { type PlanInput, plan, sameContent } from './planner.js';

const AGENT = 'agent-1';
const caps: DriverCapabilities = {
  diskFormats: ['raw', 'qcow2'],
  containerFormats: ['bare'],
  retireModes: ['hide', 'disable', 'delete'],
  access: ['public', 'private', 'shared'],
  reportsChecksums: ['md5', 'sha512'],
  reportsSize: true,
  importFromUrl: false,
  requiresUrl: false,
  properties: true,
  tags: true,
  download: true,
  detectsInUse: false,
};
const now = new Date('2026-06-01T00:00:00Z');
const policy = (p: Record<string, unknown> = {}): SyncPolicy => syncPolicySchema.parse(p);

/** A catalog image, public unless `extra` says otherwise: the default selector takes public images only. */
function image(name: string, extra: Partial<ImageDraft> = {}, content = name): Image {
  const fields = { name, architecture: 'x86_64', diskFormat: 'qcow2', access: 'public', ...extra };
  const draft = newImage(fields as ImageDraft);
  return {
    ...draft,
    status: 'available',
    location: { store: 'local', uri: `file:///x/${name}` },
    size: 100,
    checksums: { md5: fakeSha(content).slice(0, 32), sha256: fakeSha(content), sha512: fakeSha(content).repeat(2) },
  };
}

function input(
  catalog: Image[],
  observed: CloudImage[],
  p: SyncPolicy = policy(),
  extra: Partial<PlanInput> = {},
): PlanInput {
  return {
    target: 'prod',
    agentId: AGENT,
    policy: p,
    capabilities: caps,
    catalog,
    observed,
    retiredSince: new Map(),
    now,
    ...extra,
  };
}

const kinds = (p: ReturnType<typeof plan>) => p.actions.map((a) => `${a.kind}:${a.name}`);

describe('planner', () => {
  it('creates what is missing, with the name template and the visibility mapping', () => {
    const a = image('ubuntu', { access: 'public' });
    const result = plan(input([a], [], policy({ naming: '{name}-{shortId}', visibility: { public: 'private' } })));
    expect(result.actions).toHaveLength(1);
    const action = result.actions[0]!;
    expect(action.kind).toBe('create');
    if (action.kind !== 'create') return;
    expect(action.desired.image.name).toBe(`ubuntu-${a.id.slice(0, 8)}`);
    expect(action.desired.image.access).toBe('private');
    expect(action.desired.diskFormat).toBe('qcow2');
  });

  it(
    'never widens access: a private image is not copied to ' + 'a cloud offering public only, and a copy is retired',
    () => {
      const a = image('secret', { access: 'private', owner: 'o' });
      const publicOnly = { ...caps, access: ['public'] as DriverCapabilities['access'] };
      const p = policy({ selector: { access: ['private'] } });
      const none = plan(input([a], [], p, { capabilities: publicOnly }));
      expect(none.actions).toEqual([]);
      expect(none.notes).toEqual([
        expect.objectContaining({ name: 'secret', warn: true, message: expect.stringMatching(/widened/) }),
      ]);
      // A copy made earlier (say, before the cloud lost its private level) is not kept public.
      const copy = cloudCopy(a, AGENT);
      expect(kinds(plan(input([a], [copy], p, { capabilities: publicOnly })))).toEqual([
        expect.stringMatching(/^retire:/),
      ]);
      // Shared falls back to private, never to public.
      const b = image('team', { access: 'shared', owner: 'o' });
      const privateOnly = { ...caps, access: ['public', 'private'] as DriverCapabilities['access'] };
      const shared = plan(input([b], [], policy({ selector: { access: ['shared'] } }), { capabilities: privateOnly }));
      const created = shared.actions[0]!;
      expect(created.kind === 'create' && created.desired.image.access).toBe('private');
    },
  );

  it('does nothing when the cloud is in step', () => {
    const a = image('ubuntu');
    expect(plan(input([a], [cloudCopy(a, AGENT)])).actions).toEqual([]);
  });

  it('updates metadata only (no re-upload) when the revision or name changed', () => {
    const a = image('ubuntu');
    const copy = cloudCopy(a, AGENT);
    const renamed = { ...applyChanges(a, { name: 'ubuntu-lts' }), status: 'available' as const };
    const result = plan(input([renamed], [copy]));
    expect(result.actions).toEqual([
      expect.objectContaining({
        kind: 'update',
        nativeId: copy.nativeId,
        changes: expect.arrayContaining([expect.stringMatching(/^revision 1 -> 2/), expect.stringMatching(/^name/)]),
      }),
    ]);
  });

  it('replaces on a content change: the new copy first, the old one retired after', () => {
    const a = image('ubuntu');
    const old = cloudCopy(a, AGENT);
    const changed = { ...a, checksums: { ...a.checksums, sha256: fakeSha('new content') }, revision: 3 };
    const result = plan(input([changed], [old], policy({ retire: { mode: 'delete' } })));
    expect(result.actions).toEqual([
      expect.objectContaining({
        kind: 'replace',
        retire: [expect.objectContaining({ kind: 'retire', nativeId: old.nativeId, mode: 'delete' })],
      }),
    ]);
  });

  it('retires per policy what left the selector or the catalog', () => {
    const a = image('ubuntu', { tags: ['gold'] });
    const b = image('debian');
    const observed = [cloudCopy(a, AGENT), cloudCopy(b, AGENT)];
    const result = plan(input([a], observed, policy({ selector: { tags: ['silver'] }, retire: { mode: 'disable' } })));
    expect(result.actions).toEqual([
      expect.objectContaining({
        kind: 'retire',
        mode: 'disable',
        reason: 'no longer selected for this cloud',
        name: 'ubuntu',
      }),
      expect.objectContaining({ kind: 'retire', mode: 'disable', reason: 'removed from the catalog', name: 'debian' }),
    ]);
  });

  it('deletes after a grace period: hide first, remember when, delete once it is over', () => {
    const a = image('ubuntu');
    const copy = cloudCopy(a, AGENT);
    const p = policy({ retire: { mode: 'delete', grace: '7d' } });
    const first = plan(input([], [copy], p));
    expect(first.actions).toEqual([expect.objectContaining({ kind: 'retire', mode: 'hide', startsGrace: true })]);
    const hidden = { ...copy, hidden: true };
    const during = plan(input([], [hidden], p, { retiredSince: new Map([[copy.nativeId, '2026-05-30T00:00:00Z']]) }));
    expect(during.actions).toEqual([]);
    expect(during.notes[0]?.message).toMatch(/deleted after the grace period/);
    const after = plan(input([], [hidden], p, { retiredSince: new Map([[copy.nativeId, '2026-05-20T00:00:00Z']]) }));
    expect(after.actions).toEqual([expect.objectContaining({ kind: 'retire', mode: 'delete' })]);
  });

  it('never deletes an image in use', () => {
    const a = image('ubuntu');
    const result = plan(input([], [cloudCopy(a, AGENT, { inUse: true })], policy({ retire: { mode: 'delete' } })));
    expect(result.actions).toEqual([]);
    expect(result.notes[0]?.message).toMatch(/in use/);
  });

  it('never touches unmarked images or images marked by another agent', () => {
    const a = image('ubuntu');
    const theirs = cloudCopy(a, 'other-agent');
    const unmarked = { ...cloudCopy(a, AGENT), markers: undefined } as unknown as CloudImage;
    delete (unmarked as { markers?: unknown }).markers;
    const result = plan(input([], [theirs, unmarked], policy({ retire: { mode: 'delete' } })));
    expect(result.actions).toEqual([]);
  });

  it('cleans up failed and unfinished copies, and removes duplicates', () => {
    const a = image('ubuntu');
    const good = cloudCopy(a, AGENT);
    const duplicate = cloudCopy(a, AGENT);
    const stuck = cloudCopy(a, AGENT, { state: 'pending' });
    const failed = cloudCopy(a, AGENT, { state: 'error' });
    const result = plan(input([a], [good, duplicate, stuck, failed]));
    expect(result.actions.map((x) => [x.kind, 'nativeId' in x ? x.nativeId : ''])).toEqual([
      ['cleanup', stuck.nativeId],
      ['cleanup', failed.nativeId],
      ['retire', expect.stringMatching(new RegExp(`^(${good.nativeId}|${duplicate.nativeId})$`))],
    ]);
    expect(result.actions[2]).toMatchObject({ mode: 'delete', reason: 'duplicate copy' });
  });

  it('adopts for each image the first unmarked image of its content not adopted yet (a scan), kernels first', () => {
    const algorithms = ['md5', 'sha256', 'sha512'] as const;
    const wanted = fc.record({
      content: fc.constantFrom('a', 'b', 'c', 'd'),
      size: fc.constantFrom(100, 100, 7),
      type: fc.constantFrom<Image['type']>('machine', 'machine', 'kernel', 'ramdisk'),
    });
    const theirs = fc.record({
      content: fc.constantFrom('a', 'b', 'c', 'e'),
      algorithms: fc.subarray([...algorithms]),
      size: fc.constantFrom<number | undefined>(100, 7, undefined),
      state: fc.constantFrom<CloudImage['state']>('active', 'active', 'pending'),
      hidden: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(wanted, { maxLength: 8 }), fc.array(theirs, { maxLength: 10 }), (images, listing) => {
        const catalog = images.map((i, n) => ({ ...image(`img-${n}`, { type: i.type }, i.content), size: i.size }));
        const observed = listing.map((u, n): CloudImage => {
          const all = image('x', {}, u.content).checksums;
          return {
            nativeId: `theirs-${n}`,
            name: `theirs-${n}`,
            state: u.state,
            hidden: u.hidden,
            inUse: false,
            access: 'public',
            ...(u.size !== undefined ? { size: u.size } : {}),
            checksums: Object.fromEntries(u.algorithms.map((a) => [a, all[a]])),
            metadata: {},
          };
        });
        // The reference: each image, in catalog order, scans the whole listing.
        const taken = new Set<string>();
        const expected = catalog.map((i) => {
          const found = observed.find(
            (u) => !taken.has(u.nativeId) && u.state === 'active' && !u.hidden && sameContent(u, i),
          );
          if (found) taken.add(found.nativeId);
          return { kernel: i.type !== 'machine', line: found ? `adopt:${i.id}:${found.nativeId}` : `create:${i.id}` };
        });
        const ordered = [...expected.filter((e) => e.kernel), ...expected.filter((e) => !e.kernel)].map((e) => e.line);
        const actions = plan(input(catalog, observed, policy({ adopt: true }))).actions;
        expect(
          actions.map((a) =>
            a.kind === 'adopt' ? `adopt:${a.imageId}:${a.nativeId}` : `${a.kind}:${'imageId' in a ? a.imageId : ''}`,
          ),
        ).toEqual(ordered);
      }),
      { numRuns: Number(process.env['VISOR_PROPERTY_RUNS'] ?? 500) },
    );
  });

  it('adopts an unmarked image with the same content when allowed, instead of uploading', () => {
    const a = image('ubuntu');
    const theirs = { ...cloudCopy(a, AGENT), name: 'Ubuntu (uploaded by hand)' } as CloudImage;
    delete (theirs as { markers?: unknown }).markers;
    expect(kinds(plan(input([a], [theirs])))).toEqual(['create:ubuntu']);
    expect(plan(input([a], [theirs], policy({ adopt: true }))).actions).toEqual([
      expect.objectContaining({ kind: 'adopt', nativeId: theirs.nativeId }),
    ]);
    const different = { ...theirs, checksums: { sha512: 'f'.repeat(128) } };
    expect(kinds(plan(input([a], [different], policy({ adopt: true }))))).toEqual(['create:ubuntu']);
  });

  it('imports unmarked images when asked, once, and never pushes them back to their cloud', () => {
    const theirs = { ...cloudCopy(image('cirros'), AGENT) } as CloudImage;
    delete (theirs as { markers?: unknown }).markers;
    expect(plan(input([], [theirs], policy({ import: 'metadata' }))).actions).toEqual([
      expect.objectContaining({ kind: 'import', nativeId: theirs.nativeId, mode: 'metadata' }),
    ]);
    const imported = image('cirros', { properties: { [ORIGIN_TARGET]: 'prod', [ORIGIN_ID]: theirs.nativeId } });
    expect(plan(input([imported], [theirs], policy({ import: 'full' }))).actions).toEqual([]);
  });

  it('selects by name globs, tags, properties, access and architecture; only available images', () => {
    const images = [
      image('ubuntu-24.04', { tags: ['lts'], properties: { tier: 'prod' } }),
      image('ubuntu-23.10', { properties: { tier: 'prod' } }),
      image('debian-12', { tags: ['lts'], properties: { tier: 'prod' } }),
      image('ubuntu-22.04', { tags: ['lts'], properties: { tier: 'prod' }, access: 'private', owner: 'x' }),
      image('ubuntu-20.04', { tags: ['lts'], properties: { tier: 'prod' }, architecture: 'aarch64' }),
      { ...image('ubuntu-18.04', { tags: ['lts'], properties: { tier: 'prod' } }), status: 'locked' as const },
    ];
    const p = policy({
      selector: {
        names: ['ubuntu-*'],
        tags: ['lts'],
        properties: { tier: 'prod' },
        access: ['public'],
        architectures: ['x86_64'],
      },
    });
    expect(kinds(plan(input(images, [], p)))).toEqual(['create:ubuntu-24.04']);
  });

  it('converts when the cloud does not take the image format, or when the policy says so', () => {
    const vmdk = image('win', { diskFormat: 'vmdk' });
    const created = plan(input([vmdk], [])).actions[0];
    expect(created).toMatchObject({ desired: { diskFormat: 'qcow2', convertFrom: 'vmdk' } });
    const raw = plan(input([image('u')], [], policy({ diskFormat: 'raw' }))).actions[0];
    expect(raw).toMatchObject({ desired: { diskFormat: 'raw', convertFrom: 'qcow2' } });
  });

  it('plans kernels and ramdisks before the machine images that use them', () => {
    const kernel = image('vmlinuz', { type: 'kernel', diskFormat: 'aki' as never });
    const machine = image('machine');
    expect(kinds(plan(input([machine, kernel], [])))).toEqual(['create:vmlinuz', 'create:machine']);
  });

  describe('targets of one agent that share a cloud', () => {
    const staging = (selector: Record<string, unknown> = {}) => ({ name: 'staging', policy: policy({ selector }) });

    it("never touches, adopts or counts another target's copies, even with the same agent id", () => {
      const a = image('ubuntu');
      const b = image('debian');
      const theirs = [cloudCopy(a, AGENT, {}, 'staging'), cloudCopy(b, AGENT, {}, 'staging')];
      // Only a is selected here: b's copy is not "no longer selected", and a's is not ours to keep.
      const p = policy({ selector: { names: ['ubuntu'] }, adopt: true, retire: { mode: 'delete' } });
      const result = plan(input([a, b], theirs, p));
      expect(kinds(result)).toEqual(['create:ubuntu']);
    });

    it('gives every action on an existing copy the claim it was planned under', () => {
      const a = image('ubuntu');
      const b = image('debian');
      const renamed = { ...applyChanges(a, { name: 'ubuntu-lts' }), status: 'available' as const };
      const copyA = cloudCopy(a, AGENT);
      const copyB = cloudCopy(b, AGENT);
      const failed = cloudCopy(a, AGENT, { state: 'error' });
      const result = plan(input([renamed], [copyA, copyB, failed]));
      const claim = (imageId: string) => ({ owner: 'target', agent: AGENT, target: 'prod', imageId });
      expect(result.actions).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ kind: 'cleanup', nativeId: failed.nativeId, claim: claim(a.id) }),
          expect.objectContaining({ kind: 'update', nativeId: copyA.nativeId, claim: claim(a.id) }),
          expect.objectContaining({ kind: 'retire', nativeId: copyB.nativeId, claim: claim(b.id) }),
        ]),
      );
      expect(result.actions).toHaveLength(3);
    });

    it('adopts a copy of the older marker scheme (no target) when it is the one target selecting it: no upload', () => {
      const a = image('ubuntu');
      const old = cloudCopy(a, AGENT, {}, null);
      const result = plan(input([a], [old], policy(), { rivals: [staging({ tags: ['other'] })] }));
      expect(result.actions).toEqual([
        expect.objectContaining({
          kind: 'adopt',
          nativeId: old.nativeId,
          claim: { owner: 'legacy', agent: AGENT, imageId: a.id },
          reason: 'older markers without a target',
        }),
      ]);
      expect(result.notes).toEqual([]);
    });

    it('replaces and retires claimed older-scheme copies under the legacy claim', () => {
      const a = image('ubuntu');
      const oldMarkers = { agent: AGENT, imageId: a.id, sha256: fakeSha('old'), revision: 1 };
      const stale = cloudCopy(a, AGENT, { markers: oldMarkers }, null);
      const result = plan(input([a], [stale], policy({ retire: { mode: 'delete' } })));
      expect(result.actions).toEqual([
        expect.objectContaining({
          kind: 'replace',
          retire: [
            expect.objectContaining({
              nativeId: stale.nativeId,
              claim: { owner: 'legacy', agent: AGENT, imageId: a.id },
            }),
          ],
        }),
      ]);
    });

    it('leaves an older-scheme copy alone, and reports it, when several targets that see it select it', () => {
      const a = image('ubuntu');
      const old = cloudCopy(a, AGENT, {}, null);
      const result = plan(input([a], [old], policy(), { rivals: [staging()] }));
      // Nothing at all for that catalog image: neither the copy changed nor a second one uploaded.
      expect(result.actions).toEqual([]);
      const message = expect.stringMatching(/targets prod, staging all select it/);
      expect(result.notes).toEqual([expect.objectContaining({ nativeId: old.nativeId, message })]);
    });

    it('leaves an older-scheme copy to the one rival that selects it, without a note', () => {
      const a = image('ubuntu', { tags: ['gold'] });
      const old = cloudCopy(a, AGENT, {}, null);
      const rivals = [staging({ tags: ['gold'] })];
      const result = plan(input([a], [old], policy({ selector: { tags: ['silver'] } }), { rivals }));
      expect(result).toMatchObject({ actions: [], notes: [] });
    });

    it('reports, and never retires, an older-scheme copy that no target selects', () => {
      const a = image('ubuntu');
      const gone = image('removed');
      const copies = [cloudCopy(a, AGENT, {}, null), cloudCopy(gone, AGENT, {}, null)];
      const result = plan(input([a], copies, policy({ selector: { tags: ['silver'] }, retire: { mode: 'delete' } })));
      expect(result.actions).toEqual([]);
      expect(result.notes.map((n) => n.message)).toEqual([
        expect.stringMatching(/no target that sees it selects its catalog image/),
        expect.stringMatching(/gone from the catalog/),
      ]);
    });

    it("does not take another agent's older-scheme copies for its own", () => {
      const a = image('ubuntu');
      const result = plan(input([a], [cloudCopy(a, 'other-agent', {}, null)]));
      expect(kinds(result)).toEqual(['create:ubuntu']);
    });
  });

  describe('applying a plan and planning again gives an empty plan', () => {
    const spec = fc.record({
      images: fc.array(
        fc.record({
          name: fc.constantFrom('a', 'b', 'c', 'd'),
          tag: fc.boolean(),
          access: fc.constantFrom('public', 'private'),
          content: fc.constantFrom('x', 'y', 'z'),
          revision: fc.integer({ min: 1, max: 3 }),
        }),
        { maxLength: 6 },
      ),
      cloud: fc.array(
        fc.record({
          of: fc.nat(),
          agent: fc.constantFrom(AGENT, AGENT, 'someone-else', 'unmarked'),
          // Our agent's copies: this target's, another target's of the same agent, or the older scheme's (no target).
          target: fc.constantFrom<string | undefined>('prod', 'prod', 'staging', undefined),
          state: fc.constantFrom('active', 'active', 'pending', 'error', 'disabled'),
          hidden: fc.boolean(),
          stale: fc.boolean(),
          inUse: fc.boolean(),
        }),
        { maxLength: 10 },
      ),
      policy: fc.record({
        mode: fc.constantFrom('hide', 'disable', 'delete'),
        grace: fc.constantFrom(0, 86_400),
        import: fc.constantFrom('off', 'metadata'),
        adopt: fc.boolean(),
        tagged: fc.boolean(),
        naming: fc.constantFrom('{name}', '{name}-{revision}'),
      }),
      // Target staging sees the same images: selecting some, all or none of them.
      rival: fc.constantFrom<'none' | 'gold' | 'all'>('none', 'gold', 'all'),
    });

    it('holds for random catalogs, clouds and policies (and again after the grace period)', () => {
      fc.assert(
        fc.property(spec, (s) => {
          const catalog = s.images.map((i) => ({
            ...image(
              i.name,
              { tags: i.tag ? ['gold'] : [], access: i.access as Image['access'], owner: 'o' },
              i.content,
            ),
            revision: i.revision,
          }));
          const observed = s.cloud.flatMap((c) => {
            const source = catalog.length > 0 ? catalog[c.of % catalog.length]! : image('gone');
            const target = c.agent === AGENT ? c.target : 'prod';
            const owner = { agent: c.agent, ...(target !== undefined ? { target } : {}) };
            const copy = cloudCopy(
              source,
              c.agent === 'unmarked' ? AGENT : c.agent,
              {
                state: c.state as CloudImage['state'],
                hidden: c.hidden,
                inUse: c.inUse,
                ...(c.stale ? { markers: { ...owner, imageId: source.id, sha256: fakeSha('old'), revision: 1 } } : {}),
              },
              target ?? null,
            );
            if (c.agent === 'unmarked') delete (copy as { markers?: unknown }).markers;
            return [copy];
          });
          const p = policy({
            retire: { mode: s.policy.mode, grace: s.policy.grace },
            import: s.policy.import,
            adopt: s.policy.adopt,
            naming: s.policy.naming,
            selector: { access: ['public', 'private'], ...(s.policy.tagged ? { tags: ['gold'] } : {}) },
          });
          const rivalSelector = { access: ['public', 'private'], ...(s.rival === 'gold' ? { tags: ['gold'] } : {}) };
          const rivals = s.rival === 'none' ? [] : [{ name: 'staging', policy: policy({ selector: rivalSelector }) }];
          let world: World = { catalog, observed, retiredSince: new Map() };
          const step = (at: Date) => {
            const planNow = () =>
              plan(input(world.catalog, world.observed, p, { rivals, retiredSince: world.retiredSince, now: at }));
            world = apply(world, planNow(), AGENT, at);
            return planNow();
          };
          expect(step(now).actions).toEqual([]);
          // Time passes beyond the grace period: the deletions it allows happen, then calm again.
          expect(step(new Date(now.getTime() + 2 * 86_400_000)).actions).toEqual([]);
          // Never a single action on images that are not ours: another agent's or another target's
          // stay exactly as they were.
          const notOurs = (o: CloudImage) =>
            o.markers !== undefined && (o.markers.agent !== AGENT || o.markers.target === 'staging');
          const foreign = observed.filter(notOurs);
          for (const o of foreign) expect(world.observed.find((w) => w.nativeId === o.nativeId)).toEqual(o);
          // An older-scheme copy is touched only when this target is the one target that selects it.
          const creates = plan(input(catalog, [], p)).actions;
          const selectedHere = new Set(creates.map((a) => ('imageId' in a ? a.imageId : '')));
          for (const o of observed.filter((x) => x.markers?.agent === AGENT && x.markers.target === undefined)) {
            const catalogImage = catalog.find((i) => i.id === o.markers!.imageId);
            const wants = (r: (typeof rivals)[number]) =>
              !r.policy.selector.tags || catalogImage!.tags.includes('gold');
            const rivalWants = catalogImage !== undefined && rivals.some(wants);
            if (!selectedHere.has(o.markers!.imageId) || rivalWants) {
              expect(world.observed.find((w) => w.nativeId === o.nativeId)).toEqual(o);
            }
          }
        }),
        { numRuns: Number(process.env['VISOR_PROPERTY_RUNS'] ?? 500) },
      );
    });
  });
});
