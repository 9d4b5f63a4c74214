/**
 * The worker module of `examples/workers.ts`: loaded inside each Web Worker by URL.
 * Exports plain functions of structured-cloneable data.
 */

/** A deliberately CPU-heavy hash: `rounds` passes of FNV-1a over the text. */
export function hash(payload: { text: string; rounds: number }): string {
  let h = 0x811c9dc5;
  for (let r = 0; r < payload.rounds; r++) {
    for (let i = 0; i < payload.text.length; i++) {
      h ^= payload.text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}
