/**
 * The fault suite's judge on hand-written member logs and samples (no broker): it sees
 * each failure the scenarios look for, and passes a clean run.
 */
import { assert, assertEquals } from "@std/assert";
import { judgeLogs, type MemberEnd } from "./harness.ts";

const T = 1_000_000;

/** `P` lines for offsets `from..to` of `p`, one ms apart from `t`. */
function records(p: number, from: number, to: number, t: number): string {
  const out: string[] = [];
  for (let o = from; o <= to; o++) out.push(`P ${t + (o - from)} ${p} ${o}`);
  return out.join("\n");
}

function judge(
  logs: { id: string; text: string }[],
  samples: { t: number; committed: Map<number, number> }[] = [],
  ends: MemberEnd[] = [],
  stalled = false,
) {
  return judgeLogs({
    scenario: "t",
    produced: new Map([[0, 10], [1, 10]]),
    logs,
    samples,
    ends,
    stalled,
  });
}

Deno.test("fault judge: a clean run with a hand-over and a duplicate passes", () => {
  const v = judge(
    [
      { id: "a", text: `A ${T} 0:0,1:0\n${records(0, 0, 5, T + 1)}\n${records(1, 0, 9, T + 1)}` },
      {
        id: "b",
        text: `A ${T + 100} 0:5\n${records(0, 5, 9, T + 101)}\nX ${T + 200} run() returned`,
      },
    ],
    [{ t: T + 50, committed: new Map([[0, 5], [1, 10]]) }],
  );
  assert(v.ok, JSON.stringify(v));
  assertEquals([v.produced, v.processed, v.duplicated, v.lost], [20, 20, 1, 0]);
});

Deno.test("fault judge: a skipped range is lost, a jump and a commit ahead", () => {
  const v = judge(
    [{
      id: "a",
      text: `A ${T} 0:0,1:0\n${records(0, 0, 2, T + 1)}\n${records(0, 6, 9, T + 10)}\n${
        records(1, 0, 9, T + 1)
      }`,
    }],
    [{ t: T + 20, committed: new Map([[0, 10], [1, 10]]) }],
  );
  assert(!v.ok);
  assertEquals([v.lost, v.jumps, v.maxCommittedAhead], [3, 1, 7]);
  assert(v.evidence.some((e) => e.startsWith("lost: p0 offsets 3..5 (3)")), v.evidence.join("\n"));
});

Deno.test("fault judge: a commit sampled before its records were written is ahead", () => {
  const v = judge(
    [{ id: "a", text: `A ${T} 0:0,1:0\n${records(0, 0, 9, T + 10)}\n${records(1, 0, 9, T)}` }],
    [{ t: T + 12, committed: new Map([[0, 8], [1, 10]]) }],
  );
  // At T + 12 only offsets 0..2 of p0 were processed.
  assertEquals(v.maxCommittedAhead, 5);
  assert(!v.ok);
});

Deno.test("fault judge: two members on one partition at once is an overlap", () => {
  const v = judge([
    { id: "a", text: `A ${T} 0:0,1:0\n${records(0, 0, 9, T)}\n${records(1, 0, 9, T)}` },
    { id: "b", text: `A ${T + 2} 0:3\n${records(0, 3, 5, T + 3)}` },
  ]);
  assertEquals(v.overlaps, 1);
  assert(!v.ok);
});

Deno.test("fault judge: an overlap that starts during a broker outage or its grace is tolerated, counted apart", () => {
  const logs = [
    { id: "a", text: `A ${T} 0:0,1:0\n${records(0, 0, 9, T)}\n${records(1, 0, 9, T)}` },
    { id: "b", text: `A ${T + 2} 0:3\n${records(0, 3, 5, T + 3)}` },
  ];
  const during = (outage: { from: number; to: number }, grace: number) =>
    judgeLogs({
      scenario: "t",
      produced: new Map([[0, 10], [1, 10]]),
      logs,
      samples: [],
      ends: [],
      stalled: false,
      outages: [outage],
      sessionTimeoutMs: grace,
    });
  const tolerated = during({ from: T - 100, to: T - 10 }, 50); // b starts within the grace
  assertEquals([tolerated.overlaps, tolerated.overlapsAfterOutage], [0, 1]);
  assert(tolerated.ok);
  const late = during({ from: T - 100, to: T - 10 }, 5); // b starts after the grace
  assertEquals([late.overlaps, late.overlapsAfterOutage], [1, 0]);
  assert(!late.ok);
});

Deno.test("fault judge: stuck and crashed members, and a stall, fail the run", () => {
  const logs = [{
    id: "a",
    text: `A ${T} 0:0,1:0\n${records(0, 0, 9, T)}\n${records(1, 0, 9, T)}\nX ${
      T + 50
    } run() failed: boom`,
  }];
  assertEquals(judge(logs).crashed, 1);
  assert(!judge(logs).ok);
  const fine = [{ id: "a", text: logs[0].text.replace("failed: boom", "returned") }];
  assert(judge(fine).ok);
  assertEquals(judge(fine, [], [{ id: "a", how: "stuck", code: null }]).stuck, 1);
  assert(!judge(fine, [], [{ id: "a", how: "stuck", code: null }]).ok);
  assert(!judge(fine, [], [], true).ok);
});
