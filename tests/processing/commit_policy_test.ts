/** CommitPolicy's rules, on its state alone (the processor's commits are in processor_test.ts). */
import { assertEquals } from "@std/assert";
import { CommitPolicy } from "../../processing/commit_policy.ts";

Deno.test("CommitPolicy: the message rule counts offsets since the last commit (1,2,3,6,11 → 0,1,1,2,3)", () => {
  const state = new CommitPolicy({ messages: 2 }).createState(0);
  const p = { toString: () => "p" } as never;
  let commits = 0;
  const seen: number[] = [];
  for (const o of [1, 2, 3, 6, 11]) {
    const offsets = new Map([[p, o]]);
    if (state.shouldCommit(0, offsets)) {
      state.didCommit(0, offsets);
      commits++;
    }
    seen.push(commits);
  }
  assertEquals(seen, [0, 1, 1, 2, 3]);
});

Deno.test("CommitPolicy: the time rule commits once the interval has passed", () => {
  const state = new CommitPolicy({ intervalMs: 2 }).createState(0);
  const seen: boolean[] = [];
  for (let t = 0; t <= 4; t++) {
    const yes = state.shouldCommit(t, new Map());
    if (yes) state.didCommit(t, new Map());
    seen.push(yes);
  }
  assertEquals(seen, [false, false, true, false, true]);
});
