// How many bytes a piece of code allocates per call, from the young generation's growth: `run(n)`
// makes n calls; each try measures what new space grew by over `calls` calls, and a try in which
// a scavenge came (new space shrank) is left out. Returns the bytes per call of the tries that
// counted (the smallest is the measure: nothing else in the test allocates meanwhile).
import { getHeapSpaceStatistics } from 'node:v8';

function newSpaceUsed(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
}

export function youngBytesPerCall(run: (calls: number) => void, calls: number, tries = 8): number[] {
  run(calls * 10); // optimized before it is measured
  const perCall: number[] = [];
  for (let t = 0; t < tries; t++) {
    const before = newSpaceUsed();
    run(calls);
    const grown = newSpaceUsed() - before;
    if (grown >= 0) perCall.push(grown / calls);
  }
  if (perCall.length === 0) throw new Error('every try saw a scavenge');
  return perCall;
}
