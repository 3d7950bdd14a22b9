// The visor dashboard: a small page over the API, with no framework and no build step. Every
// string from the server goes into the page as text (textContent), never as markup.

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOutButton = document.getElementById('signout');

const session = { user: undefined, csrf: '', auth: true };
/** Bumped on every navigation: a view's pending refresh stops once another view is shown. */
let viewToken = 0;

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** One API call with the session cookie; a change carries the CSRF token. */
async function api(path, { method = 'GET', body, query } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query ?? {}))
    if (value !== '' && value !== undefined) url.searchParams.set(key, value);
  const headers = { accept: 'application/json' };
  if (method !== 'GET') {
    headers['content-type'] = 'application/json';
    if (session.csrf) headers['x-csrf-token'] = session.csrf;
  }
  const response = await fetch(url, {
    method,
    headers,
    credentials: 'same-origin',
    body: method === 'GET' ? undefined : JSON.stringify(body ?? {}),
  });
  if (response.status === 204) return undefined;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401 && session.user && !path.startsWith('/ui/session')) {
      session.user = undefined;
      showSignIn('Your session ended: sign in again.');
    }
    throw new HttpError(response.status, data.message ?? `${response.status} ${response.statusText}`);
  }
  return data;
}

/** An element: h('a', { href: '#/x', class: 'c' }, 'text', child, ...). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const svgNs = 'http://www.w3.org/2000/svg';
function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(svgNs, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  for (const child of children) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return element;
}

/**
 * A status as a badge. Statuses are open words (new ones appear as the server learns them):
 * the tone comes from what the word says, and an unknown word still shows, in a neutral tone.
 */
function tone(status) {
  const word = String(status).toLowerCase();
  if (/fail|error|kill|unusable|refus/.test(word)) return 'bad';
  if (/pending|retir|deprecat|obsolete|partial|running|convert|queue|sav|degrad|upload|lock/.test(word)) return 'warn';
  if (/in-sync|active|available|succeed|healthy|created|updated|replaced|adopted|imported/.test(word)) return 'ok';
  if (/absent|unknown|never|unchanged|skipped/.test(word)) return 'idle';
  return 'info';
}
const badge = (status, title) =>
  h('span', { class: 'badge', 'data-tone': tone(status), 'data-status': status, title }, status);

function bytes(value) {
  if (typeof value !== 'number') return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${n.toFixed(1)} ${units[unit]}`;
}
const when = (iso) => (iso ? `${iso.slice(0, 19).replace('T', ' ')} UTC` : '–');
const duration = (ms) => (typeof ms === 'number' ? (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`) : '–');
const counts = (c) =>
  Object.entries(c ?? {})
    .map(([result, n]) => `${n} ${result}`)
    .join(', ') || 'nothing to do';

function show(title, ...content) {
  // A view shows its heading twice (loading, then loaded): focus stays on it when it was there.
  const focused = document.activeElement === document.body || document.activeElement?.tagName === 'H1';
  const heading = h('h1', { tabindex: '-1' }, title);
  main.replaceChildren(heading, ...content);
  document.title = `${title} · visor`;
  if (focused) heading.focus();
}
function showError(error) {
  main.append(h('p', { class: 'error', role: 'alert' }, error.message));
}
function table(headers, rows, attributes = {}) {
  const head = h(
    'thead',
    {},
    h(
      'tr',
      {},
      headers.map((label) =>
        h('th', { scope: 'col', class: label.endsWith('#') ? 'num' : undefined }, label.replace(/#$/, '')),
      ),
    ),
  );
  return h('table', attributes, head, h('tbody', {}, rows));
}

// ---- sign-in ---------------------------------------------------------------------------------

function showSignIn(message) {
  viewToken++;
  nav.hidden = true;
  signOutButton.hidden = true;
  who.textContent = '';
  const error = h('p', { class: 'error', role: 'alert', id: 'signin-error' }, message ?? '');
  const accessKey = h('input', {
    id: 'access-key',
    name: 'accessKey',
    autocomplete: 'username',
    required: true,
    spellcheck: 'false',
  });
  const secretKey = h('input', {
    id: 'secret-key',
    name: 'secretKey',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'panel signin', 'aria-describedby': 'signin-error' },
    h('h1', {}, 'Sign in to visor'),
    h('p', { class: 'muted' }, 'With your API access key and secret key (from visor users add).'),
    h('label', { for: 'access-key' }, 'Access key'),
    accessKey,
    h('label', { for: 'secret-key' }, 'Secret key'),
    secretKey,
    submit,
    error,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      const answer = await api('/ui/session', {
        method: 'POST',
        body: { accessKey: accessKey.value, secretKey: secretKey.value },
      });
      signedIn(answer);
      if (!location.hash || location.hash === '#/') location.hash = '#/catalog';
      else route();
    } catch (caught) {
      error.textContent = caught.message;
      secretKey.value = '';
      secretKey.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(form);
  document.title = 'Sign in · visor';
  accessKey.focus();
}

function signedIn(answer) {
  session.user = answer.user;
  session.csrf = answer.csrf;
  session.auth = answer.auth;
  nav.hidden = false;
  signOutButton.hidden = !answer.auth;
  who.textContent = `${answer.user.name}${answer.user.admin ? ' (admin)' : ''}`;
}

signOutButton.addEventListener('click', async () => {
  try {
    await api('/ui/session/end', { method: 'POST' });
  } finally {
    session.user = undefined;
    session.csrf = '';
    history.replaceState(null, '', '#/');
    showSignIn('Signed out.');
  }
});

// ---- catalog ---------------------------------------------------------------------------------

const pageSize = 25;
const architectures = ['', 'x86_64', 'aarch64', 'i386', 'armv7l', 'ppc64le', 's390x', 'riscv64'];
const formats = ['', 'raw', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi', 'iso', 'ami'];
const accessLevels = ['', 'public', 'private', 'shared'];
const sorts = [
  ['name', 'Name'],
  ['created_at', 'Created'],
  ['updated_at', 'Updated'],
  ['size', 'Size'],
];

function select(name, label, options, value) {
  const id = `f-${name}`;
  const control = h(
    'select',
    { id, name },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)),
  );
  return h('div', {}, h('label', { for: id }, label), control);
}
function field(name, label, value) {
  const id = `f-${name}`;
  return h('div', {}, h('label', { for: id }, label), h('input', { id, name, value: value ?? '', type: 'search' }));
}

/**
 * The catalog's filters live in the address (#/catalog?search=...), so that back and reload keep them. The
 * search box finds text in names, tags and descriptions (the API's `search`); the other fields are exact.
 */
async function catalogView(params) {
  const token = viewToken;
  const q = Object.fromEntries(params);
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter images' },
    field('search', 'Search', q.search),
    select(
      'architecture',
      'Architecture',
      architectures.map((a) => [a, a || 'any']),
      q.architecture ?? '',
    ),
    select(
      'format',
      'Format',
      formats.map((f) => [f, f || 'any']),
      q.format ?? '',
    ),
    select(
      'access',
      'Access',
      accessLevels.map((a) => [a, a || 'any']),
      q.access ?? '',
    ),
    field('owner', 'Owner', q.owner),
    field('tag', 'Tag', q.tag),
    select('sort', 'Sort by', sorts, q.sort ?? 'name'),
    select(
      'dir',
      'Order',
      [
        ['asc', 'ascending'],
        ['desc', 'descending'],
      ],
      q.dir ?? 'asc',
    ),
    h('button', { type: 'submit', class: 'primary' }, 'Search'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value) next.set(key, String(value));
    location.hash = `#/catalog?${next}`;
  });
  show('Catalog', form);
  const query = { ...q, limit: String(pageSize), sort: q.sort ?? 'name', dir: q.dir ?? 'asc' };
  try {
    const page = await api('/images/detail', { query });
    if (token !== viewToken) return;
    const rows = page.images.map((image) =>
      h(
        'tr',
        {},
        h('td', {}, h('a', { href: `#/images/${image._id}` }, image.name)),
        h('td', {}, image.architecture),
        h('td', {}, image.format ?? '–'),
        h('td', {}, image.access),
        h('td', {}, image.owner ?? '–'),
        h('td', { class: 'num' }, bytes(image.size)),
        h('td', {}, badge(image.status)),
        h('td', {}, (image.tags ?? []).join(', ')),
        h('td', {}, when(image.updated_at)),
      ),
    );
    const headers = ['Name', 'Architecture', 'Format', 'Access', 'Owner', 'Size#', 'Status', 'Tags', 'Updated'];
    main.append(
      rows.length ? table(headers, rows, { id: 'images' }) : h('p', { class: 'muted' }, 'No images match.'),
      pager(q, page.next, (marker) => `#/catalog?${new URLSearchParams({ ...q, marker })}`),
    );
  } catch (error) {
    showError(error);
  }
}

/** Previous/next by marker (keyset paging on the server: fast on any catalog size). */
function pager(q, next, linkFor) {
  const bar = h('div', { class: 'pager' });
  if (q.marker) bar.append(h('button', { type: 'button', onclick: () => history.back() }, '← Previous'));
  if (next) bar.append(h('a', { href: linkFor(next), rel: 'next' }, 'Next →'));
  return bar;
}

// ---- one image -------------------------------------------------------------------------------

const shownFields = [
  ['_id', 'Id'],
  ['status', 'Status'],
  ['access', 'Access'],
  ['owner', 'Owner'],
  ['members', 'Shared with'],
  ['architecture', 'Architecture'],
  ['type', 'Type'],
  ['format', 'Disk format'],
  ['container_format', 'Container format'],
  ['os_type', 'OS'],
  ['os_distro', 'Distribution'],
  ['os_version', 'Version'],
  ['size', 'Size'],
  ['virtual_size', 'Virtual size'],
  ['min_disk', 'Min disk (GiB)'],
  ['min_ram', 'Min RAM (MiB)'],
  ['tags', 'Tags'],
  ['store', 'Store'],
  ['created_at', 'Created'],
  ['updated_at', 'Updated'],
  ['uploaded_at', 'Uploaded'],
  ['revision', 'Revision'],
];
const notProperties = new Set([
  ...shownFields.map(([k]) => k),
  'name',
  'uri',
  'location',
  'checksum',
  'checksums',
  'owner_id',
  'kernel',
  'ramdisk',
]);

async function imageView(id) {
  const token = viewToken;
  show('Image');
  try {
    const [{ image }, where] = await Promise.all([
      api(`/images/${encodeURIComponent(id)}/meta`),
      api(`/images/${encodeURIComponent(id)}/where`),
    ]);
    if (token !== viewToken) return;
    show(image.name);
    const value = (key) => {
      const v = image[key];
      if (v === undefined) return undefined;
      if (key === 'status') return badge(v);
      if (key === 'size' || key === 'virtual_size') return `${bytes(v)} (${v} bytes)`;
      if (key.endsWith('_at')) return when(v);
      return Array.isArray(v) ? v.join(', ') : String(v);
    };
    const meta = h('dl', { class: 'meta' });
    for (const [key, label] of shownFields) {
      const v = value(key);
      if (v !== undefined && v !== '')
        meta.append(h('dt', {}, label), h('dd', { class: key === '_id' ? 'mono' : undefined }, v));
    }
    const sums = h('dl', { class: 'meta' });
    for (const [alg, hex] of Object.entries(image.checksums ?? {}))
      sums.append(h('dt', {}, alg), h('dd', { class: 'mono' }, hex));
    const props = Object.entries(image).filter(([key]) => !notProperties.has(key));
    const placements = where.clouds.map((c) =>
      h(
        'tr',
        {},
        h('td', {}, c.target),
        h('td', {}, badge(c.status, c.detail)),
        h('td', { class: 'mono' }, c.copies.map((copy) => copy.nativeId).join(', ') || '–'),
        h('td', {}, c.copies.map((copy) => copy.name).join(', ') || '–'),
        h('td', {}, when(c.since)),
        h('td', {}, c.verified ? when(c.verified.at) : 'never'),
        h('td', {}, c.detail ?? ''),
      ),
    );
    main.append(
      h('section', { class: 'panel', 'aria-label': 'Metadata' }, meta),
      h('h2', {}, 'Checksums'),
      h('section', { class: 'panel' }, sums.childElementCount ? sums : h('p', { class: 'muted' }, 'No content yet.')),
      props.length ? h('h2', {}, 'Properties') : '',
      props.length
        ? table(
            ['Key', 'Value'],
            props.map(([k, v]) => h('tr', {}, h('td', { class: 'mono' }, k), h('td', {}, String(v)))),
          )
        : '',
      h('h2', {}, 'In the clouds'),
      placements.length
        ? table(['Cloud', 'Status', 'Native id', 'Name there', 'Since', 'Last verified', 'Detail'], placements, {
            id: 'placements',
          })
        : h('p', { class: 'muted' }, 'No clouds are configured.'),
    );
  } catch (error) {
    if (token === viewToken) showError(error);
  }
}

// ---- clouds ----------------------------------------------------------------------------------

const stepText = (t) => (t.phase === 'converting' ? `converting ${t.phaseDetail ?? ''}`.trim() : t.phase);
const percent = (t) => (t.total ? `${Math.floor((100 * (t.bytes ?? 0)) / t.total)}%` : (stepText(t) ?? 'starting'));
const transferText = (t) => `${t.action} ${t.name} ${percent(t)}${t.total ? ` of ${bytes(t.total)}` : ''}`;

function health(cloud) {
  if (cloud.error) return 'unusable';
  if (cloud.running) return 'running';
  const status = cloud.lastRun?.status;
  if (!status) return 'never run';
  return { succeeded: 'healthy', partial: 'degraded', failed: 'failing' }[status] ?? status;
}

async function cloudsView(params) {
  const token = viewToken;
  const q = Object.fromEntries(params);
  const live = h('span', { class: 'live', 'aria-live': 'polite' });
  show('Clouds', h('div', { class: 'toolbar' }, live));
  const cloudsHolder = h('div');
  const planHolder = h('div', { 'aria-live': 'polite' });
  const matrixHolder = h('div');
  main.append(cloudsHolder, planHolder, h('h2', {}, 'Images × clouds'), matrixHolder);
  let wanted = false;

  /** Sync now (`sync`) or retry only what failed (`retry-failed`): both start a run the page then follows. */
  const syncNow = async (name, button, verb = 'sync') => {
    button.disabled = true;
    // A plan read before the run is out of date once it starts.
    planHolder.replaceChildren();
    try {
      await api(`/targets/${encodeURIComponent(name)}/${verb}`, { method: 'POST' });
      wanted = true;
      await refresh();
    } catch (error) {
      button.disabled = false;
      cloudsHolder.append(h('p', { class: 'error', role: 'alert' }, error.message));
    }
  };

  const showPlan = async (name, button) => {
    button.disabled = true;
    planHolder.replaceChildren(h('p', { class: 'muted' }, `Reading ${name} to plan…`));
    try {
      const { plan } = await api(`/targets/${encodeURIComponent(name)}/plan`);
      const rows = plan.actions.map((a) =>
        h(
          'tr',
          {},
          h('td', {}, badge(a.kind)),
          h('td', {}, a.imageId ? h('a', { href: `#/images/${a.imageId}` }, a.name) : a.name),
          h('td', { class: 'mono' }, a.nativeId ?? '–'),
          h('td', {}, a.detail),
        ),
      );
      planHolder.replaceChildren(
        h('h2', {}, `Plan for ${name}: what the next run would do`),
        rows.length
          ? table(['Action', 'Image', 'Native id', 'Detail'], rows, { id: 'plan' })
          : h('p', { id: 'plan', class: 'muted' }, 'Nothing to do: the cloud is in step with the catalog.'),
        plan.notes.length
          ? h(
              'ul',
              {},
              plan.notes.map((n) => h('li', {}, `${n.name}: ${n.message}`)),
            )
          : '',
      );
    } catch (error) {
      planHolder.replaceChildren(h('p', { class: 'error', role: 'alert' }, error.message));
    } finally {
      button.disabled = false;
    }
  };

  async function refresh() {
    if (token !== viewToken) return;
    let running = false;
    try {
      const [{ clouds }, matrix] = await Promise.all([
        api('/clouds'),
        api('/clouds/matrix', { query: { sort: 'name', limit: String(pageSize), ...q } }),
      ]);
      if (token !== viewToken) return;
      running = clouds.some((c) => c.running);
      const rows = clouds.map((cloud) => {
        const actions = h('td');
        if (session.user?.admin && cloud.running !== undefined) {
          const label = cloud.running ? 'Running…' : 'Sync now';
          const disabled = cloud.running || !cloud.enabled;
          const button = h('button', { type: 'button', 'data-cloud': cloud.name, disabled }, label);
          button.addEventListener('click', () => syncNow(cloud.name, button));
          const plan = h('button', { type: 'button', 'data-plan': cloud.name }, 'Plan');
          plan.addEventListener('click', () => showPlan(cloud.name, plan));
          actions.append(button, ' ', plan);
          const failed =
            (cloud.lastRun?.counts?.failed ?? 0) > 0 ||
            matrix.images.some((image) => image.clouds[cloud.name]?.status === 'failed');
          if (failed && !cloud.running && cloud.enabled) {
            const retry = h('button', { type: 'button', 'data-retry': cloud.name }, 'Retry failed');
            retry.addEventListener('click', () => syncNow(cloud.name, retry, 'retry-failed'));
            actions.append(' ', retry);
          }
        }
        const last = cloud.lastRun;
        return h(
          'tr',
          { 'data-cloud': cloud.name },
          h('td', {}, cloud.name),
          h('td', {}, cloud.adapter),
          h('td', { class: 'mono' }, cloud.schedule ?? 'manual'),
          h(
            'td',
            {},
            last
              ? [
                  badge(last.status),
                  ' ',
                  h('a', { href: `#/runs/${last.id}` }, when(last.finishedAt ?? last.startedAt)),
                ]
              : '–',
          ),
          h(
            'td',
            {},
            cloud.transfers?.length ? cloud.transfers.map(transferText).join('; ') : last ? counts(last.counts) : '–',
          ),
          h('td', {}, when(cloud.nextRun)),
          h('td', {}, badge(health(cloud), cloud.error ?? last?.error)),
          actions,
        );
      });
      cloudsHolder.replaceChildren(
        rows.length
          ? table(['Cloud', 'Adapter', 'Schedule', 'Last run', 'Result / in flight', 'Next run', 'Health', ''], rows, {
              id: 'clouds',
            })
          : h('p', { class: 'muted' }, 'No clouds are configured.'),
      );
      const header = ['Image', ...matrix.clouds];
      const cells = matrix.images.map((image) =>
        h(
          'tr',
          { 'data-image': image.id },
          h('td', {}, h('a', { href: `#/images/${image.id}` }, image.name)),
          matrix.clouds.map((name) => {
            const moving = clouds.find((c) => c.name === name)?.transfers?.find((t) => t.imageId === image.id);
            if (moving) return h('td', { 'data-cloud': name }, badge(`${moving.action}: ${percent(moving)}`));
            const cell = image.clouds[name];
            const title = [cell.detail, cell.nativeIds.join(', ')].filter(Boolean).join(' · ') || undefined;
            return h('td', { 'data-cloud': name }, badge(cell.status, title));
          }),
        ),
      );
      matrixHolder.replaceChildren(
        cells.length
          ? table(header, cells, { id: 'matrix', class: 'matrix' })
          : h('p', { class: 'muted' }, 'No images.'),
        pager(q, matrix.next, (marker) => `#/clouds?${new URLSearchParams({ ...q, marker })}`),
      );
      live.textContent = running ? 'Live: a sync is running; this page follows it.' : '';
    } catch (error) {
      if (token === viewToken) showError(error);
      return;
    }
    // While a run goes on (or one was just asked for), the page follows it without a reload.
    if (running || wanted) {
      wanted = running;
      setTimeout(refresh, 1000);
    }
  }
  await refresh();
}

// ---- runs ------------------------------------------------------------------------------------

function barChart(title, runs, measure, label) {
  const width = 600;
  const height = 120;
  const values = runs.map(measure);
  const max = Math.max(1, ...values);
  const step = width / Math.max(values.length, 1);
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': title,
    preserveAspectRatio: 'none',
  });
  values.forEach((value, i) => {
    const barHeight = Math.max(1, (value / max) * (height - 4));
    const run = runs[i];
    const rect = s('rect', {
      x: i * step + 1,
      y: height - barHeight,
      width: Math.max(1, step - 2),
      height: barHeight,
      'data-tone': tone(run.status),
    });
    rect.append(s('title', {}, `${run.target} ${when(run.startedAt)}: ${label(value)}`));
    svg.append(rect);
  });
  return h(
    'figure',
    { class: 'panel chart' },
    h('h2', {}, title),
    svg,
    h('figcaption', { class: 'muted' }, `max ${label(max)}, oldest left`),
  );
}

async function runsView(params) {
  const token = viewToken;
  const q = Object.fromEntries(params);
  show('Runs');
  try {
    const { runs } = await api('/runs', { query: { target: q.target, limit: '100' } });
    if (token !== viewToken) return;
    const chronological = [...runs].reverse().filter((r) => !r.dryRun);
    const rows = runs.map((run) =>
      h(
        'tr',
        {},
        h('td', {}, h('a', { href: `#/runs/${run.id}` }, when(run.startedAt))),
        h('td', {}, run.target),
        h('td', {}, badge(run.status, run.error)),
        h('td', {}, run.trigger + (run.dryRun ? ' (dry run)' : '')),
        h('td', { class: 'num' }, duration(run.durationMs)),
        h('td', { class: 'num' }, bytes(run.bytes)),
        h('td', {}, counts(run.counts)),
        h('td', { class: 'num' }, run.drift ?? '–'),
      ),
    );
    main.append(
      chronological.length
        ? h(
            'div',
            { class: 'charts' },
            barChart('Bytes moved per run', chronological, (r) => r.bytes, bytes),
            barChart('Run duration', chronological, (r) => r.durationMs ?? 0, duration),
          )
        : '',
      rows.length
        ? table(['Started', 'Cloud', 'Status', 'Trigger', 'Duration#', 'Bytes#', 'Tasks', 'Drift#'], rows, {
            id: 'runs',
          })
        : h('p', { class: 'muted' }, 'No runs yet.'),
    );
  } catch (error) {
    showError(error);
  }
}

const logText = (line) =>
  [when(line.at), line.level, line.message, ...Object.entries(line.fields ?? {}).map(([k, v]) => `${k}=${v}`)].join(
    ' ',
  );

async function runView(id) {
  const token = viewToken;
  show('Run');
  try {
    const { run } = await api(`/runs/${encodeURIComponent(id)}`);
    if (token !== viewToken) return;
    show(`Run of ${run.target}, ${when(run.startedAt)}`);
    const meta = h(
      'dl',
      { class: 'meta' },
      h('dt', {}, 'Status'),
      h('dd', {}, badge(run.status)),
      h('dt', {}, 'Trigger'),
      h('dd', {}, run.trigger + (run.dryRun ? ' (dry run)' : '')),
      h('dt', {}, 'Duration'),
      h('dd', {}, duration(run.durationMs)),
      h('dt', {}, 'Bytes moved'),
      h('dd', {}, bytes(run.bytes)),
      h('dt', {}, 'Drift after'),
      h('dd', {}, run.drift ?? '–'),
      h('dt', {}, 'Agent'),
      h('dd', {}, run.agent),
      run.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error' }, run.error)] : '',
    );
    const rows = run.actions.flatMap((a) => [
      h(
        'tr',
        {},
        h('td', {}, a.action),
        h('td', {}, badge(a.result)),
        h('td', {}, a.imageId ? h('a', { href: `#/images/${a.imageId}` }, a.name ?? a.imageId) : (a.name ?? '–')),
        h('td', { class: 'mono' }, a.nativeId ?? '–'),
        h('td', { class: 'num' }, bytes(a.bytes)),
        h('td', { class: 'num' }, duration(a.ms)),
        h('td', { class: 'num' }, a.attempts ?? '–'),
        h('td', {}, a.error ? `${a.error.kind}: ${a.error.message}` : (a.detail ?? '')),
      ),
      a.log?.length
        ? h(
            'tr',
            { class: 'log' },
            h(
              'td',
              { colspan: '8' },
              h(
                'details',
                {},
                h('summary', {}, `Log (${a.log.length})`),
                h('pre', { class: 'mono' }, a.log.map(logText).join('\n')),
              ),
            ),
          )
        : '',
    ]);
    main.append(
      h('section', { class: 'panel' }, meta),
      h('h2', {}, 'Tasks'),
      rows.length
        ? table(['Task', 'Result', 'Image', 'Native id', 'Bytes#', 'Time#', 'Attempts#', 'Detail'], rows, {
            id: 'tasks',
          })
        : h('p', { class: 'muted' }, 'Nothing to do in this run.'),
    );
  } catch (error) {
    if (token === viewToken) showError(error);
  }
}

// ---- routing ---------------------------------------------------------------------------------

function route() {
  if (!session.user) return;
  viewToken++;
  const hash = location.hash.slice(1) || '/catalog';
  const [path, search] = hash.split('?');
  const params = new URLSearchParams(search ?? '');
  const parts = path.split('/').filter(Boolean);
  const section = parts[0] === 'images' ? 'catalog' : parts[0];
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  let shown;
  if (parts[0] === 'images' && parts[1]) shown = imageView(parts[1]);
  else if (parts[0] === 'clouds') shown = cloudsView(params);
  else if (parts[0] === 'runs' && parts[1]) shown = runView(parts[1]);
  else if (parts[0] === 'runs') shown = runsView(params);
  else shown = catalogView(params);
  // Keyboard and screen-reader users land on the new view's heading.
  main.querySelector('h1')?.focus();
  return shown;
}

window.addEventListener('hashchange', () => route());

async function start() {
  try {
    const answer = await api('/ui/session');
    if (!answer.user) return showSignIn();
    signedIn(answer);
    await route();
  } catch (error) {
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, error.message));
  }
}

start();
