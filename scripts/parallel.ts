// Runs shell commands side by side and fails when any of them fails: `npm test` runs its static
// checks this way (the build and the type check, eslint, prettier share nothing, and none of them
// keeps two cores busy; one after the other they took about a minute on 2 cores, side by side about
// half). Each command's output is held and printed whole when it ends, under its command line, so
// two failures never interleave.
//
//   node scripts/parallel.ts 'COMMAND' 'COMMAND' ...   exits 0 when every command did, else 1
import { spawn } from 'node:child_process';

async function run(command: string): Promise<boolean> {
  const child = spawn(command, { shell: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => output.push(d));
  child.stderr.on('data', (d: Buffer) => output.push(d));
  const started = Date.now();
  const code = await new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(null));
    child.once('close', (exitCode) => resolve(exitCode));
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const verdict = code === 0 ? 'ok' : `FAILED (exit ${code ?? 'signal'})`;
  process.stdout.write(`> ${command}: ${verdict} in ${seconds} s\n`);
  if (output.length > 0) process.stdout.write(Buffer.concat(output));
  return code === 0;
}

const commands = process.argv.slice(2);
if (commands.length === 0) {
  process.stderr.write("usage: node scripts/parallel.ts 'COMMAND' ['COMMAND' ...]\n");
  process.exit(2);
}
const results = await Promise.all(commands.map(run));
process.exitCode = results.every(Boolean) ? 0 : 1;
