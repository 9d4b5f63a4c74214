/**
 * The worker module of `examples/workers.ts`: loaded inside each Web Worker by URL.
 * Exports plain functions of structured-cloneable data.
 */

/** A deliberately CPU-heavy hash: `rounds` passes of FNV-1a over the text. */
export function hash(payload: { text: string; rounds: number }): string {
  // Copy fields to locals before hot loops: property loads on structured-cloned objects
  // can be much slower than on objects created in the worker.
  const { text, rounds } = payload;
  let h = 0x811c9dc5;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}
