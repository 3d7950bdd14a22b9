// The pure planner (agent/sync/planner.ts) on a generated catalog of 100,000 images and four
// targets, each with its own policy and its own observed listing: mostly in step, with a little
// of everything the planner decides (create, update, replace, retire, cleanup, import, adopt).
import { createHash, randomUUID } from 'node:crypto';
import { dist } from '../lib/dist.mjs';
import { median, now, secondsSince } from '../lib/util.mjs';

// The generator uses the build under test; the planners timed may be of any build. Its own
// instance of desired.js (the query makes a separate module): calls from the generator would
// otherwise train V8 on the functions the planner is timed with, and the "first pass" would not
// be what a fresh `visor sync` pays.
const { syncPolicySchema } = await import(`${dist}/core/config/sync-policy.js`);
const { desiredFor, isSelected } = await import(`${dist}/agent/sync/desired.js?generator`);

const AGENT = 'bench-agent';
const sha = (s, algorithm = 'sha256') => createHash(algorithm).update(s).digest('hex');
const baseCaps = {
  containerFormats: ['bare'],
  reportsSize: true,
  importFromUrl: false,
  requiresUrl: false,
  properties: true,
  tags: true,
  download: true,
  detectsInUse: false,
};

const distros = ['ubuntu', 'debian', 'centos', 'alpine', 'fedora'];
const arches = ['x86_64', 'aarch64', 'ppc64le', 'x86_64'];

/** Catalog images as the catalog returns them: available, with location, size and checksums. */
function catalog(n) {
  const created = '2026-01-01T00:00:00.000Z';
  return Array.from({ length: n }, (_, i) => {
    const distro = distros[i % distros.length];
    const content = `content-${i}`;
    return {
      id: randomUUID(),
      name: `${distro}-${String(i).padStart(6, '0')}`,
      architecture: arches[i % arches.length],
      diskFormat: i % 3 ? 'qcow2' : 'raw',
      containerFormat: 'bare',
      type: 'machine',
      access: i % 7 === 0 ? 'private' : 'public',
      members: [],
      owner: 'admin',
      status: 'available',
      size: 1_000_000 + i,
      checksums: { md5: sha(content, 'md5'), sha256: sha(content), sha512: sha(content, 'sha512') },
      os: { distro, version: String(10 + (i % 14)) },
      tags: i % 2 ? ['gold'] : ['edge'],
      properties: { build: String(i), hw_disk_bus: i % 2 ? 'virtio' : 'scsi' },
      location: { store: 'local', uri: `file:///var/lib/visor/images/${i}` },
      createdAt: created,
      updatedAt: created,
      uploadedAt: created,
      revision: 1 + (i % 3),
    };
  });
}

let nativeCounter = 0;
/**
 * Our markers on a copy: agent and target (the current scheme), or the agent only (copies made
 * before markers named their target: the planner's one-time migration, every copy adopted).
 */
const markersOf = (scheme, target, fields) =>
  scheme === 'legacy' ? { agent: AGENT, ...fields } : { agent: AGENT, target, ...fields };

/** The cloud's view of our copy of `desired` for `target` (in step unless `overrides` says otherwise). */
function copyOf(d, target, scheme, overrides = {}) {
  const image = d.image;
  return {
    nativeId: `native-${++nativeCounter}`,
    name: image.name,
    state: 'active',
    hidden: false,
    inUse: false,
    access: image.access,
    diskFormat: d.diskFormat,
    containerFormat: 'bare',
    size: image.size,
    checksums: { md5: image.checksums.md5, sha512: image.checksums.sha512 },
    markers: markersOf(scheme, target, {
      imageId: image.id,
      sha256: image.checksums.sha256,
      revision: image.revision,
    }),
    metadata: {},
    createdAt: '2026-01-02T00:00:00.000Z',
    ...overrides,
  };
}

const unmarked = (i, image) => ({
  nativeId: `theirs-${i}`,
  name: `someone-else-${i}`,
  state: 'active',
  hidden: false,
  inUse: false,
  access: 'public',
  checksums: image ? { md5: image.checksums.md5, sha512: image.checksums.sha512 } : { md5: sha(`theirs-${i}`, 'md5') },
  size: image ? image.size : 42,
  metadata: {},
});

/**
 * The observed listing of one target: every selected image in step, except — per 1,000 selected —
 * 5 missing (create), 5 renamed in the catalog (update), 2 with new content (replace), 2 pending
 * leftovers (cleanup); plus copies of images gone from the catalog (retire) and the cloud's own images.
 */
function observedFor(images, policy, target, caps, { unmarkedCount, adoptable = 0 }, scheme) {
  const out = [];
  let selected = 0;
  const adoptFrom = [];
  for (const image of images) {
    if (!isSelected(image, policy, target)) continue;
    const d = desiredFor(image, policy, caps);
    const k = selected++ % 1000;
    if (k < 5) continue;
    if (k < 10)
      out.push(
        copyOf(d, target, scheme, {
          name: `${d.image.name}-old`,
          markers: markersOf(scheme, target, {
            imageId: image.id,
            sha256: image.checksums.sha256,
            revision: image.revision - 1,
          }),
        }),
      );
    else if (k < 12)
      out.push(
        copyOf(d, target, scheme, {
          markers: markersOf(scheme, target, {
            imageId: image.id,
            sha256: sha(`old-${image.id}`),
            revision: image.revision - 1,
          }),
        }),
      );
    else if (k < 14) {
      out.push(copyOf(d, target, scheme));
      out.push(copyOf(d, target, scheme, { state: 'pending' }));
    } else if (k < 14 + adoptable) adoptFrom.push(image);
    else out.push(copyOf(d, target, scheme));
  }
  for (let i = 0; i < selected / 100; i++)
    out.push(
      copyOf({ image: { ...images[0], id: randomUUID(), name: `removed-${i}` }, diskFormat: 'raw' }, target, scheme),
    );
  for (let i = 0; i < unmarkedCount; i++) out.push(unmarked(i));
  for (const [i, image] of adoptFrom.entries()) out.push(unmarked(`a${i}`, image));
  return { observed: out, selected };
}

export function plannerTargets(images, scheme = 'target') {
  const policy = (p) => syncPolicySchema.parse(p);
  const targets = [
    {
      name: 'glance',
      policy: policy({
        selector: { tags: ['gold'], access: ['public', 'private'] },
        naming: '{name}',
        retire: { mode: 'hide' },
      }),
      caps: {
        ...baseCaps,
        diskFormats: ['raw', 'qcow2', 'vmdk', 'vdi', 'vhd', 'vhdx', 'iso', 'ami', 'ari', 'aki'],
        retireModes: ['hide', 'disable', 'delete'],
        access: ['public', 'private', 'shared'],
        reportsChecksums: ['md5', 'sha512'],
      },
      extra: { unmarkedCount: 1000 },
    },
    {
      name: 'opennebula',
      policy: policy({
        selector: { names: ['ubuntu-*', 'debian-*', 'centos-0?????'] },
        naming: '{name}-{shortId}',
        visibility: { public: 'shared' },
        retire: { mode: 'disable' },
      }),
      caps: {
        ...baseCaps,
        diskFormats: ['raw', 'qcow2', 'iso', 'aki', 'ari'],
        retireModes: ['disable', 'delete'],
        access: ['public', 'private', 'shared'],
        reportsChecksums: ['md5'],
        detectsInUse: true,
      },
      extra: { unmarkedCount: 500 },
    },
    {
      name: 'eucalyptus',
      policy: policy({
        selector: { architectures: ['x86_64'], access: ['public', 'private'] },
        naming: '{name}-{architecture}',
        retire: { mode: 'delete', grace: '7d' },
      }),
      caps: {
        ...baseCaps,
        diskFormats: ['raw'],
        retireModes: ['hide', 'delete'],
        access: ['public', 'private'],
        reportsChecksums: [],
      },
      extra: { unmarkedCount: 200 },
    },
    {
      name: 'nimbus',
      policy: policy({
        selector: { access: ['public', 'private', 'shared'] },
        retire: { mode: 'delete' },
        import: 'metadata',
        adopt: true,
      }),
      caps: {
        ...baseCaps,
        diskFormats: ['raw'],
        retireModes: ['delete'],
        access: ['public', 'private'],
        reportsChecksums: ['md5'],
      },
      extra: { unmarkedCount: 1000, adoptable: 2 },
    },
  ];
  return targets.map((t) => ({ ...t, ...observedFor(images, t.policy, t.name, t.caps, t.extra, scheme) }));
}

export { catalog as benchCatalog };

/** Generates the catalog and listings once, then times `plan` of each build in `dists` (first pass cold, then warm). */
export async function plannerFigures({ images: n, targets: count, repeat, dists, log, markers = 'target' }) {
  // Earlier builds (quadratic ones among them) are timed cold only.
  const repeats = (key) => (key === 'visor' ? repeat : 0);
  log(`  generating ${n} images and ${count} observed listings (markers: ${markers})`);
  // As a sync gets them: the catalog's records and the cloud's listing parsed from JSON, so every
  // id is a flat string of its own (randomUUID's are concatenations that a Map lookup must flatten
  // first, and a marker sharing the catalog's string object compares equal without reading it).
  const generated = catalog(n);
  const images = JSON.parse(JSON.stringify(generated));
  const targets = plannerTargets(generated, markers)
    .slice(0, count)
    .map((t) => ({ ...t, observed: JSON.parse(JSON.stringify(t.observed)) }));
  const when = new Date('2026-06-01T00:00:00Z');
  const out = {};
  for (const [key, buildDir] of Object.entries(dists)) {
    const { plan } = await import(`${buildDir}/agent/sync/planner.js`);
    const runOnce = (t) => {
      const cpu0 = process.cpuUsage();
      const t0 = now();
      const p = plan({
        target: t.name,
        agentId: AGENT,
        policy: t.policy,
        capabilities: t.caps,
        catalog: images,
        observed: t.observed,
        retiredSince: new Map(),
        now: when,
      });
      const seconds = secondsSince(t0);
      const cpu = process.cpuUsage(cpu0);
      // CPU seconds of the whole process (GC threads included): wall time is noisy on a loaded machine.
      return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, plan: p };
    };
    globalThis.gc?.();
    log(`  planning with the ${key} build`);
    // The first pass is what one `visor sync` pays (a fresh process: code not yet optimised).
    const first = targets.map(runOnce);
    const warm = targets.map(() => []);
    const warmCpu = targets.map(() => []);
    for (let r = 0; r < repeats(key); r++) {
      for (const [i, t] of targets.entries()) {
        const { seconds, cpuSeconds } = runOnce(t);
        warm[i].push(seconds);
        warmCpu[i].push(cpuSeconds);
      }
    }
    const perTarget = targets.map((t, i) => {
      const counts = {};
      for (const a of first[i].plan.actions) counts[a.kind] = (counts[a.kind] ?? 0) + 1;
      return {
        name: t.name,
        selected: t.selected,
        observed: t.observed.length,
        firstSeconds: first[i].seconds,
        firstCpuSeconds: first[i].cpuSeconds,
        warmSeconds: warm[i].length ? median(warm[i]) : undefined,
        warmCpuSeconds: warmCpu[i].length ? median(warmCpu[i]) : undefined,
        actions: first[i].plan.actions.length,
        counts,
        notes: first[i].plan.notes.length,
      };
    });
    out[key] = {
      perTarget,
      firstTotalSeconds: perTarget.reduce((s, t) => s + t.firstSeconds, 0),
      firstTotalCpuSeconds: perTarget.reduce((s, t) => s + t.firstCpuSeconds, 0),
      warmTotalCpuSeconds: repeats(key) ? perTarget.reduce((s, t) => s + t.warmCpuSeconds, 0) : undefined,
      warmTotalSeconds: repeats(key) ? perTarget.reduce((s, t) => s + t.warmSeconds, 0) : undefined,
    };
  }
  return { images: n, targets: count, markers, ...out };
}
