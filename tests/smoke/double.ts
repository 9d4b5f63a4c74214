/** The smoke suite's worker function (loaded by `RunTaskInWorkers`). */
export default function double(n: number): number {
  return n * 2;
}
