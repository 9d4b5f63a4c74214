import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { strategyContract } from "../_support/contract.ts";

strategyContract<number>({
  name: "CommitOffsets",
  terminal: true,
  make: ({ commit, highWaterMark, clock }) => new CommitOffsets(commit, { highWaterMark, clock }),
  makeFailing: ({ highWaterMark, clock }) =>
    new CommitOffsets(() => {
      throw new Error("commit failed");
    }, { highWaterMark, clock }),
});
