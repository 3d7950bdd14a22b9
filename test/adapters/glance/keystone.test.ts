import { readFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import axios from 'axios';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GlanceClient } from '../../../adapters/glance/client.js';
import {
  authRequestBody,
  findEndpoint,
  KeystoneSession,
  keystoneV3Url,
  type KeystoneCredentials,
  type KeystoneToken,
} from '../../../adapters/glance/client-keystone.js';
import { keystoneTokenResponseSchema, parsePayload } from '../../../adapters/glance/schema.js';
import { isVisorError, type VisorError } from '../../../core/errors.js';
import { requirePeer } from '../../peers/index.js';
import type { OpenStackPeer } from '../../peers/openstack.js';
import { passwordCredentials, rawToken } from './harness.js';

const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../fixtures/keystone/${name}`, import.meta.url), 'utf8')) as unknown;

async function failure(promise: Promise<unknown>): Promise<VisorError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isVisorError(error)) throw new Error(`expected a VisorError, got ${String(error)}`);
  return error;
}

describe('Keystone v3 (recorded samples)', () => {
  const catalog =
    parsePayload(keystoneTokenResponseSchema, fixture('admin-auth-password-project-scoped-response.json'), 'token')
      .token.catalog ?? [];

  it('parses the recorded token responses; the unscoped one has no catalog', () => {
    for (const name of [
      'admin-auth-password-project-scoped-response.json',
      'auth-responses-project-scoped-password.json',
      'admin-auth-application-credential-response.json',
    ]) {
      expect(parsePayload(keystoneTokenResponseSchema, fixture(name), name).token.catalog?.length).toBeGreaterThan(0);
    }
    expect(
      parsePayload(keystoneTokenResponseSchema, fixture('auth-responses-unscoped-password.json'), 'u').token.catalog,
    ).toBeUndefined();
    expect(() => parsePayload(keystoneTokenResponseSchema, { token: { methods: ['password'] } }, 'Keystone')).toThrow(
      /expires_at/,
    );
  });

  it('finds the image endpoint of a full catalog by interface and region', () => {
    expect(findEndpoint(catalog, 'image', 'public')).toBe('http://23.253.248.171:9292');
    expect(findEndpoint(catalog, 'image', 'internal', 'RegionOne')).toBe('http://23.253.248.171:9292');
    expect(findEndpoint(catalog, 'compute', 'admin', 'RegionOne')).toMatch(/^http:\/\/23\.253\.248\.171:8774\/v2\.1/);
  });

  it('explains a missing service, interface or region as a config error', () => {
    const noImage =
      parsePayload(keystoneTokenResponseSchema, fixture('admin-auth-application-credential-response.json'), 't').token
        .catalog ?? [];
    for (const [call, pattern] of [
      [() => findEndpoint(noImage, 'image', 'public'), /no "image" service \(it offers: identity\)/],
      [
        () => findEndpoint(catalog, 'image', 'public', 'RegionTwo'),
        /no public "image" endpoint in region RegionTwo \(it offers: .*public@RegionOne/,
      ],
    ] as const) {
      let error: unknown;
      try {
        call();
      } catch (e) {
        error = e;
      }
      expect(isVisorError(error, 'config')).toBe(true);
      expect((error as Error).message).toMatch(pattern);
    }
  });

  it('asks for a region when several regions offer the service', () => {
    const twoRegions = [
      {
        type: 'image',
        endpoints: [
          { interface: 'public', url: 'http://a:9292', region_id: 'R1' },
          { interface: 'public', url: 'http://b:9292', region_id: 'R2' },
        ],
      },
    ];
    expect(() => findEndpoint(twoRegions, 'image', 'public')).toThrow(
      /several public "image" endpoints \(regions R1, R2\): set the region option/,
    );
    expect(findEndpoint(twoRegions, 'image', 'public', 'R2')).toBe('http://b:9292');
  });

  it('builds the recorded application-credential request exactly, and scoped password requests', () => {
    expect(
      authRequestBody({
        type: 'applicationCredential',
        id: '423f19a4ac1e4f48bbb4180756e6eb6c',
        secret: 'rEaqvJka48mpv',
      }),
    ).toEqual(fixture('admin-auth-application-credential-id-request.json'));
    const byId = fixture('auth-requests-project-id-password.json') as { auth: { scope: unknown } };
    expect(
      (
        authRequestBody({
          type: 'password',
          username: 'u',
          password: 'p',
          userDomainName: 'Default',
          projectId: 'a6944d763bf64ee6a275f1263fae0352',
          projectDomainName: 'Default',
        }) as { auth: { scope: unknown } }
      ).auth.scope,
    ).toEqual(byId.auth.scope);
    expect(
      authRequestBody({
        type: 'password',
        username: 'admin',
        password: 'p',
        userDomainName: 'Default',
        projectName: 'admin',
        projectDomainName: 'Default',
      }),
    ).toEqual({
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: 'admin', domain: { name: 'Default' }, password: 'p' } },
        },
        scope: { project: { name: 'admin', domain: { name: 'Default' } } },
      },
    });
    expect(
      authRequestBody({
        type: 'applicationCredential',
        name: 'visor',
        username: 'demo',
        userDomainName: 'Default',
        secret: 's',
      }),
    ).toEqual({
      auth: {
        identity: {
          methods: ['application_credential'],
          application_credential: { name: 'visor', secret: 's', user: { name: 'demo', domain: { name: 'Default' } } },
        },
      },
    });
  });

  it('normalises the auth URL to the v3 API', () => {
    expect(
      ['http://k:5000', 'http://k:5000/', 'http://k:5000/v3', 'http://k:5000/v3/', 'https://k/identity/v3'].map(
        keystoneV3Url,
      ),
    ).toEqual([
      'http://k:5000/v3',
      'http://k:5000/v3',
      'http://k:5000/v3',
      'http://k:5000/v3',
      'https://k/identity/v3',
    ]);
  });
});

const { peer: started, skip } = await requirePeer('openstack');

describe('Keystone v3 (real Keystone)', () => {
  const peer = started as OpenStackPeer;
  beforeEach((ctx) => {
    if (skip) ctx.skip(skip);
  });
  const sessions: KeystoneSession[] = [];
  const session = (
    credentials: KeystoneCredentials,
    extra: Partial<ConstructorParameters<typeof KeystoneSession>[0]> = {},
  ) => {
    const s = new KeystoneSession({
      authUrl: peer.authUrl,
      credentials,
      interface: 'public',
      region: peer.region,
      timeoutMs: 30_000,
      ...extra,
    });
    sessions.push(s);
    return s;
  };
  afterAll(() => {
    for (const s of sessions) s.close();
  });

  it('authenticates with a password and finds Glance in the catalog', async () => {
    const s = session(passwordCredentials(peer.admin));
    const token = await s.token();
    expect(token.id.length).toBeGreaterThan(20);
    expect(token.roles).toContain('admin');
    expect(token.expiresAt - Date.now()).toBeGreaterThan(50 * 60_000);
    expect(s.endpoint(token, 'image')).toBe(peer.glanceUrl);
    const demo = await session(passwordCredentials(peer.demo)).token();
    expect([...demo.roles].sort()).toEqual(['member', 'reader']);
  });

  it('accepts the auth URL without /v3, and a project by id', async () => {
    const admin = await session(passwordCredentials(peer.admin)).token();
    const { projectName: _name, ...byId } = passwordCredentials(peer.admin) as Extract<
      KeystoneCredentials,
      { type: 'password' }
    >;
    const s = session({ ...byId, projectId: admin.projectId! }, { authUrl: peer.authUrl.replace(/\/v3$/, '') });
    expect((await s.token()).projectId).toBe(admin.projectId);
  });

  describe('application credentials', () => {
    let userId = '';
    let created: { id: string; name: string; secret: string } | undefined;
    let demoToken = '';

    beforeAll(async () => {
      if (skip) return;
      demoToken = await rawToken(peer, 'demo');
      const me = await axios.get(`${peer.authUrl}/auth/tokens`, {
        headers: { 'X-Auth-Token': demoToken, 'X-Subject-Token': demoToken },
      });
      userId = me.data.token.user.id;
      const name = `visor-test-${Date.now()}`;
      const response = await axios.post(
        `${peer.authUrl}/users/${userId}/application_credentials`,
        { application_credential: { name, description: 'visor keystone test' } },
        { headers: { 'X-Auth-Token': demoToken } },
      );
      created = {
        id: response.data.application_credential.id,
        name,
        secret: response.data.application_credential.secret,
      };
    });
    afterAll(async () => {
      if (created && !skip)
        await axios.delete(`${peer.authUrl}/users/${userId}/application_credentials/${created.id}`, {
          headers: { 'X-Auth-Token': demoToken },
        });
    });

    it('authenticates by application credential id and lists images with it', async () => {
      const s = session({ type: 'applicationCredential', id: created!.id, secret: created!.secret });
      const token = await s.token();
      expect(token.projectId).toBeDefined();
      const client = new GlanceClient({ session: s, timeoutMs: 30_000 });
      expect(Array.isArray((await client.listPage({ limit: '5' })).images)).toBe(true);
    });

    it('authenticates by application credential name + user', async () => {
      const s = session({
        type: 'applicationCredential',
        name: created!.name,
        username: peer.demo.username,
        userDomainName: peer.demo.userDomainName,
        secret: created!.secret,
      });
      expect((await s.token()).userId).toBe(userId);
    });

    it('refuses a wrong application credential secret as auth, without echoing it', async () => {
      const error = await failure(
        session({ type: 'applicationCredential', id: created!.id, secret: 'wrong-secret-xyz' }).token(),
      );
      expect(error.kind).toBe('auth');
      expect(error.message).not.toContain('wrong-secret-xyz');
    });
  });

  it('reuses one token for many calls', async () => {
    const s = session(passwordCredentials(peer.demo));
    const client = new GlanceClient({ session: s, timeoutMs: 30_000 });
    for (let i = 0; i < 10; i++) await client.listPage({ limit: '1' });
    await Promise.all(Array.from({ length: 5 }, () => client.listPage({ limit: '1' })));
    expect(s.authentications).toBe(1);
  });

  it('shares one authentication between concurrent first callers', async () => {
    const s = session(passwordCredentials(peer.demo));
    const tokens = await Promise.all(Array.from({ length: 5 }, () => s.token()));
    expect(new Set(tokens.map((t) => t.id)).size).toBe(1);
    expect(s.authentications).toBe(1);
  });

  it('renews the token 5 minutes before it expires (clock moved forward)', async () => {
    let offset = 0;
    const s = session(passwordCredentials(peer.demo), { clock: { now: () => Date.now() + offset } });
    const client = new GlanceClient({ session: s, timeoutMs: 30_000 });
    const first = await s.token();
    const lifetime = first.expiresAt - Date.now();
    offset = lifetime - 6 * 60_000; // 6 minutes left: still used
    await client.listPage({ limit: '1' });
    expect(s.authentications).toBe(1);
    offset = lifetime - 4 * 60_000; // 4 minutes left: renewed before use
    await client.listPage({ limit: '1' });
    expect(s.authentications).toBe(2);
    const second = await s.token();
    expect(second.id).not.toBe(first.id);
    expect(second.renewAt).toBeGreaterThan(first.renewAt);
  });

  it('keeps using a still-valid token when Keystone cannot be reached for an early renewal', async () => {
    // A TCP relay in front of the real Keystone, closed to make Keystone unreachable.
    const keystone = new URL(peer.authUrl);
    const relay = createServer((socket) => {
      const upstream = connect(Number(keystone.port), keystone.hostname);
      socket.pipe(upstream).pipe(socket);
      const close = () => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', close);
      upstream.on('error', close);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    let offset = 0;
    const s = session(passwordCredentials(peer.demo), {
      authUrl: `http://127.0.0.1:${(relay.address() as AddressInfo).port}/v3`,
      clock: { now: () => Date.now() + offset },
    });
    const first = await s.token();
    await new Promise<void>((resolve) => relay.close(() => resolve()));
    offset = first.expiresAt - Date.now() - 60_000; // in the renewal window, one minute before expiry
    expect((await s.token()).id).toBe(first.id);
    expect(s.authentications).toBe(2);
    offset = first.expiresAt - Date.now() + 1000; // expired: no way around Keystone any more
    expect((await failure(s.token())).kind).toBe('unavailable');
  });

  it('renews once when Glance refuses the token (401), then succeeds', async () => {
    const real = new KeystoneSession({
      authUrl: peer.authUrl,
      credentials: passwordCredentials(peer.demo),
      interface: 'public',
      timeoutMs: 30_000,
    });
    sessions.push(real);
    // A session whose first token Glance does not know (as after a revocation).
    let served = 0;
    const revoked = {
      token: async (): Promise<KeystoneToken> => {
        const token = await real.token();
        return served++ === 0 ? { ...token, id: 'gAAAAA-revoked-token' } : token;
      },
      invalidate: (id: string) => real.invalidate(id),
      endpoint: (token: KeystoneToken, type: string) => real.endpoint(token, type),
    } as unknown as KeystoneSession;
    const client = new GlanceClient({ session: revoked, timeoutMs: 30_000 });
    await client.listPage({ limit: '1' });
    expect(served).toBe(2);
  });

  it('discovers the image endpoint for each interface, and refuses an unknown region', async () => {
    for (const iface of ['public', 'internal', 'admin'] as const) {
      const s = session(passwordCredentials(peer.demo), { interface: iface });
      expect(s.endpoint(await s.token(), 'image')).toBe(peer.glanceUrl);
    }
    const s = session(passwordCredentials(peer.demo), { region: 'NoSuchRegion' });
    const client = new GlanceClient({ session: s, timeoutMs: 30_000 });
    const error = await failure(client.listPage({ limit: '1' }));
    expect(error.kind).toBe('config');
    expect(error.message).toMatch(/no public "image" endpoint in region NoSuchRegion \(it offers: .*RegionOne/);
  });

  it('reports a wrong password as auth, without the password in the message', async () => {
    const error = await failure(session(passwordCredentials(peer.demo, { password: 'wrong-password-123' })).token());
    expect(error.kind).toBe('auth');
    expect(error.message).toMatch(/authenticating user "demo" \(domain Default\): HTTP 401/);
    expect(error.message).not.toContain('wrong-password-123');
    expect(JSON.stringify(error.cause)).not.toContain('wrong-password-123');
  });

  it('reports an unknown project as auth, and a Keystone that is not there as unavailable', async () => {
    expect(
      (await failure(session(passwordCredentials(peer.demo, { projectName: 'no-such-project' })).token())).kind,
    ).toBe('auth');
    expect(
      (await failure(session(passwordCredentials(peer.demo), { authUrl: 'http://127.0.0.1:1/v3' }).token())).kind,
    ).toBe('unavailable');
  });
});
