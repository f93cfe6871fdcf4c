// The emojivoto "emoji" service (gRPC): the catalogue of emoji that can be voted for.
// ListAll returns them all; FindByShortcode returns the one with a shortcode like ":doughnut:",
// or no emoji when there is none. Each call takes a millisecond or two, so latencies show.
// Usage: node examples/emojivoto/emoji.ts [--listen HOST:PORT | --port N] [--exit-on-stdin-close]
import type * as grpc from '@grpc/grpc-js';
import { EmojiService, parseServiceFlags, serveGrpc, sleep, type Emoji } from './common.ts';

/** The catalogue: shortcode -> character. */
export const EMOJI: readonly Emoji[] = [
  ['😀', ':grinning:'],
  ['😂', ':joy:'],
  ['😍', ':heart_eyes:'],
  ['🤔', ':thinking:'],
  ['😎', ':sunglasses:'],
  ['🥳', ':partying_face:'],
  ['🙃', ':upside_down_face:'],
  ['😴', ':sleeping:'],
  ['👻', ':ghost:'],
  ['🤖', ':robot:'],
  ['🐶', ':dog:'],
  ['🐱', ':cat:'],
  ['🦄', ':unicorn:'],
  ['🐙', ':octopus:'],
  ['🌵', ':cactus:'],
  ['🌈', ':rainbow:'],
  ['🔥', ':fire:'],
  ['🍕', ':pizza:'],
  ['🍩', ':doughnut:'],
  ['☕', ':coffee:'],
  ['🚀', ':rocket:'],
  ['🎉', ':tada:'],
  ['💯', ':100:'],
  ['👍', ':+1:'],
].map(([unicode, shortcode]) => ({ unicode: unicode!, shortcode: shortcode! }));

const byShortcode = new Map(EMOJI.map((e) => [e.shortcode, e]));

const flags = parseServiceFlags(process.argv.slice(2));

await serveGrpc('emoji', flags, EmojiService.service, {
  ListAll: (_call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
    void sleep(1 + Math.random() * 2).then(() => callback(null, { list: EMOJI }));
  },
  FindByShortcode: (
    call: grpc.ServerUnaryCall<{ shortcode: string }, object>,
    callback: grpc.sendUnaryData<object>,
  ) => {
    const emoji = byShortcode.get(call.request.shortcode);
    void sleep(Math.random() * 2).then(() => callback(null, emoji === undefined ? {} : { emoji }));
  },
});
