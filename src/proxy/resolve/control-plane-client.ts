// One gRPC client of the control plane, kept at the address its locator names
// (control-plane-address.ts). `get()` hands out the client for where the control plane is now: a
// new one (the old one closed) when the control plane moved, or when the old one's channel is in
// TRANSIENT_FAILURE. The latter means a call never waits out grpc-js's own reconnect backoff
// (which fails every call at once until its timer runs out, up to the cap): the caller's backoff
// alone decides when to call again, and the first call after the control plane is back reaches
// it. Shared by the Destination, Policy and Identity clients.
import * as grpc from '@grpc/grpc-js';
import type { ControlPlaneLocator } from './control-plane-address.ts';

export class ControlPlaneClient<C extends grpc.Client> {
  readonly locator: ControlPlaneLocator;
  readonly #make: (address: string) => C;
  #client: C | null = null;
  #address = '';
  #closed = false;

  constructor(locator: ControlPlaneLocator, make: (address: string) => C) {
    this.locator = locator;
    this.#make = make;
  }

  /** The address of the client `get()` last handed out. */
  get address(): string {
    return this.#address;
  }

  /** The client to call with now (see the file comment). */
  get(): C {
    const address = this.locator.current();
    const client = this.#client;
    if (client !== null && !this.#closed && address === this.#address && !failing(client)) return client;
    client?.close();
    this.#address = address;
    this.#client = this.#make(address);
    if (this.#closed) this.#client.close(); // calls on it fail at once; nobody should be calling
    return this.#client;
  }

  close(): void {
    this.#closed = true;
    this.#client?.close();
  }
}

function failing(client: grpc.Client): boolean {
  return client.getChannel().getConnectivityState(false) === grpc.connectivityState.TRANSIENT_FAILURE;
}
