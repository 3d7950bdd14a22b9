// `node --expose-gc bench/planner.mjs` (after `npm run build`): the planner row of BENCHMARKS.md on
// its own, for profiling (`node --cpu-prof ...`). BENCH_PLANNER_IMAGES (default 100,000),
// BENCH_PLANNER_TARGETS (default 4), BENCH_REPEAT warm passes (default 3); BENCH_DIST for another
// build; BENCH_PLANNER_MARKERS=legacy for copies of the older marker scheme (a one-time
// migration). Prints the per-target figures and the process's CPU seconds as JSON.
import { dist } from './lib/dist.mjs';
import { plannerFigures } from './figures/planner.mjs';

const log = (m) => process.stderr.write(`[bench planner] ${m}\n`);
const cpu0 = process.cpuUsage();
const result = await plannerFigures({
  images: Number(process.env.BENCH_PLANNER_IMAGES ?? 100_000),
  targets: Number(process.env.BENCH_PLANNER_TARGETS ?? 4),
  repeat: Number(process.env.BENCH_REPEAT ?? 3),
  dists: { visor: dist },
  markers: process.env.BENCH_PLANNER_MARKERS ?? 'target',
  log,
});
const cpu = process.cpuUsage(cpu0);
const v = result.visor;
for (const t of v.perTarget) {
  log(
    `${t.name}: selected ${t.selected}, observed ${t.observed}, actions ${t.actions} ${JSON.stringify(t.counts)}, ` +
      `notes ${t.notes}, first ${t.firstSeconds.toFixed(3)} s (${t.firstCpuSeconds.toFixed(3)} CPU-s), ` +
      `warm ${t.warmSeconds?.toFixed(3) ?? '-'} s (${t.warmCpuSeconds?.toFixed(3) ?? '-'} CPU-s)`,
  );
}
log(
  `total: first pass ${v.firstTotalSeconds.toFixed(3)} s (${v.firstTotalCpuSeconds.toFixed(3)} CPU-s), ` +
    `warm ${v.warmTotalSeconds?.toFixed(3) ?? '-'} s (${v.warmTotalCpuSeconds?.toFixed(3) ?? '-'} CPU-s); ` +
    `process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s (generation included)`,
);
process.stdout.write(`${JSON.stringify(result)}\n`);
