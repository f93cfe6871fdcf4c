// The workload token `trellis run` gives its proxy for the Identity API (src/control/identity/
// tokens.ts mints and checks it): a file only this user can read, minted again well before it
// runs out for as long as the workload runs, removed when it stops.
import { rm } from 'node:fs/promises';
import { writeAtomically } from '../control/discovery/state-file-io.ts';
import { workloadTokenPath } from '../control/discovery/state-layout.ts';
import { mintWorkloadToken } from '../control/identity/tokens.ts';

/** Who the token speaks for. */
export interface TokenOwner {
  readonly root: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/**
 * The workload's token for the Identity API, in a file only this user can read that the proxy
 * re-reads before each certificate request. Minted with a short lifetime and minted again well
 * before it runs out, for as long as the workload runs; the control plane also refuses it once the
 * workload is no longer registered, so a copy is worth nothing after the workload stops.
 */
export class WorkloadToken {
  static readonly TTL_MS = 60 * 60 * 1000;
  readonly path: string;
  private readonly options: TokenOwner;
  private readonly instance: string;
  private timer: NodeJS.Timeout | null = null;

  private constructor(options: TokenOwner, instance: string, path: string) {
    this.options = options;
    this.instance = instance;
    this.path = path;
  }

  static async start(
    options: TokenOwner,
    instance: string,
    note: (text: string) => void,
  ): Promise<WorkloadToken> {
    const path = workloadTokenPath(options.root, options.namespace, instance);
    const token = new WorkloadToken(options, instance, path);
    await token.write();
    token.timer = setInterval(() => {
      token
        .write()
        .catch((error: unknown) => note(`cannot renew the workload token: ${(error as Error).message}`));
    }, WorkloadToken.TTL_MS / 3);
    token.timer.unref();
    return token;
  }

  private async write(): Promise<void> {
    const text = await mintWorkloadToken(this.options.root, {
      namespace: this.options.namespace,
      serviceAccount: this.options.serviceAccount,
      instance: this.instance,
      ttlMs: WorkloadToken.TTL_MS,
    });
    await writeAtomically(this.path, text + '\n');
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await rm(this.path, { force: true });
  }
}
