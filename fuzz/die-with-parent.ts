// A prefix for commands the campaign starts so that they die with it, however it ends (even
// SIGKILL): util-linux setpriv's --pdeathsig, when setpriv is there.
import { spawnSync } from 'node:child_process';

export const DIE_WITH_PARENT: readonly string[] =
  spawnSync('setpriv', ['--help'], { stdio: 'ignore' }).status === 0
    ? ['setpriv', '--pdeathsig', 'SIGKILL', '--']
    : [];
