// The emojivoto "voting" service (gRPC): counts votes. Vote(shortcode) adds one; Results lists
// the counts, most votes first. A vote for :doughnut: fails on purpose (status UNKNOWN, as in
// Linkerd's emojivoto), so the mesh has failures to show.
// Usage: node examples/emojivoto/voting.ts [--listen HOST:PORT | --port N] [--exit-on-stdin-close]
import * as grpc from '@grpc/grpc-js';
import { parseServiceFlags, serveGrpc, sleep, VotingService } from './common.ts';

/** Votes for this emoji always fail. */
export const BROKEN_SHORTCODE = ':doughnut:';

const votes = new Map<string, number>();

const flags = parseServiceFlags(process.argv.slice(2));

await serveGrpc('voting', flags, VotingService.service, {
  Vote: (call: grpc.ServerUnaryCall<{ shortcode: string }, object>, callback: grpc.sendUnaryData<object>) => {
    const shortcode = call.request.shortcode;
    void sleep(1 + Math.random() * 3).then(() => {
      if (shortcode === BROKEN_SHORTCODE) {
        callback({ code: grpc.status.UNKNOWN, details: `the vote for ${shortcode} could not be counted` });
        return;
      }
      if (!/^:[a-z0-9_+-]{1,40}:$/.test(shortcode)) {
        callback({
          code: grpc.status.INVALID_ARGUMENT,
          details: `not a shortcode: ${JSON.stringify(shortcode)}`,
        });
        return;
      }
      votes.set(shortcode, (votes.get(shortcode) ?? 0) + 1);
      callback(null, {});
    });
  },
  Results: (_call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
    const results = [...votes]
      .map(([shortcode, count]) => ({ shortcode, votes: count }))
      .sort((a, b) => b.votes - a.votes || a.shortcode.localeCompare(b.shortcode));
    callback(null, { results });
  },
});
