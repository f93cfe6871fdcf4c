// Buffer methods Node has had since v0.x but @types/node does not declare. latin1Slice skips the
// argument checks of toString('latin1', ...) on the HTTP/1 parser's hot path.
declare global {
  interface Buffer {
    latin1Slice(start: number, end: number): string;
  }
}
export {};
