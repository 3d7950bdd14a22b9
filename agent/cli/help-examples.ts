import type { Command } from 'commander';

const clientEnv =
  'VISOR_URL, VISOR_ACCESS_KEY, VISOR_SECRET_KEY, VISOR_CA_FILE, VISOR_PROFILE, VISOR_CREDENTIALS_FILE, VISOR_DEBUG';
const runtimeEnv = 'VISOR_CONFIG, VISOR_DATA_DIR, VISOR_DEBUG, and ${NAME} references in the config file';

/** An example per command and the environment variables it reads, shown after its options in --help. */
const help: Record<string, { examples: readonly string[]; env: string }> = {
  serve: { examples: ['visor serve -c /etc/visor/visor.yaml --host 0.0.0.0 --port 4568'], env: runtimeEnv },
  agent: { examples: ['visor agent -c /etc/visor/visor.yaml'], env: runtimeEnv },
  plan: { examples: ['visor plan -c visor.yaml -t glance-prod'], env: runtimeEnv },
  sync: { examples: ['visor sync -c visor.yaml -t glance-prod'], env: runtimeEnv },
  status: {
    examples: ['visor status -c visor.yaml', 'visor status --url http://agent:4568'],
    env: `${runtimeEnv}; with --url: ${clientEnv}`,
  },
  trigger: { examples: ['visor trigger glance-prod --url http://agent:4568 --wait'], env: clientEnv },
  migrate: { examples: ['visor migrate -c visor.yaml --from old-glance --to new-glance'], env: runtimeEnv },
  brief: { examples: ["visor brief -q 'architecture=x86_64&format=qcow2' -s name -d desc"], env: clientEnv },
  detail: { examples: ["visor detail -q 'property.flavour=minimal'"], env: clientEnv },
  head: { examples: ['visor head 5f0b2c1e-...'], env: clientEnv },
  get: {
    examples: ['visor get 5f0b2c1e-... --save ~/images', 'visor get 5f0b2c1e-... -o - | qemu-img info -'],
    env: clientEnv,
  },
  add: {
    examples: [
      'visor add name="CentOS 6.2" architecture=i386 format=iso access=public --file centos.iso',
      'visor add name=cirros architecture=x86_64 store=http location=http://example.org/cirros.img',
    ],
    env: clientEnv,
  },
  update: { examples: ['visor update 5f0b2c1e-... access=public tags=lts,stable'], env: clientEnv },
  delete: { examples: ['visor delete 5f0b2c1e-... 7a1d9e3f-... --json'], env: clientEnv },
  users: { examples: ['visor users add alice --admin -c visor.yaml', 'visor users list'], env: runtimeEnv },
  plugins: { examples: ['visor plugins -c visor.yaml'], env: runtimeEnv },
  config: { examples: ['visor config validate -c visor.yaml', 'visor config show -c visor.yaml'], env: runtimeEnv },
  catalog: {
    examples: [
      'visor catalog migrate -c visor.yaml',
      'visor catalog backup /var/backups/visor/catalog-$(date +%F).visor -c visor.yaml',
      'visor catalog restore /var/backups/visor/catalog-2026-01-31.visor -c visor.yaml',
      'visor catalog copy --from old.yaml --to new.yaml',
    ],
    env: runtimeEnv,
  },
  doctor: { examples: ['visor doctor -c /etc/visor/visor.yaml', 'visor doctor --json'], env: runtimeEnv },
  completion: {
    examples: ['source <(visor completion bash)', 'visor completion zsh > "${fpath[1]}/_visor"'],
    env: '-',
  },
};

/** Adds the examples and environment of every command that has them (the others keep their help as is). */
export function addHelpExamples(program: Command): void {
  for (const command of program.commands) {
    const entry = help[command.name()];
    if (!entry) continue;
    const lines = ['', 'Examples:', ...entry.examples.map((e) => `  $ ${e}`)];
    if (entry.env !== '-') lines.push('', `Environment: ${entry.env}`);
    command.addHelpText('after', lines.join('\n'));
  }
}
