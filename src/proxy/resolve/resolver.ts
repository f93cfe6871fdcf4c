// The resolver seam (grpc-js's Resolver, linkerd's discovery stream): a resolver turns a target
// name into a stream of endpoint updates (src/core/endpoints.ts). The balancer's EndpointSet
// applies them; implementations are the static resolver (static.ts, a fixed list) and the control
// plane's Destination watch (destination-client.ts, loaded on first use through
// lazy-destination.ts).
import type { Update } from '../../core/endpoints.ts';

/** What `resolve` returns: stops the stream; no callback runs after `cancel()`. */
export interface Resolution {
  cancel(): void;
}

/**
 * Resolves `target` (a logical name such as "web.default.svc:8080"). `onUpdate` is called zero or
 * more times, never synchronously from within `resolve`; `onError` reports a failure of the
 * resolution itself (the control plane is unreachable, ...) and the caller keeps its last known
 * endpoints. A resolver may keep delivering updates after an error (it retries).
 */
export interface Resolver {
  resolve(target: string, onUpdate: (update: Update) => void, onError: (error: Error) => void): Resolution;
}
