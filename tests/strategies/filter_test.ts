import { FilterStep } from "../../strategies/filter.ts";
import { strategyContract } from "../_support/contract.ts";

strategyContract<number>({
  name: "FilterStep",
  make: ({ next, highWaterMark, clock }) =>
    new FilterStep((m) => m.payload % 2 === 0, next, { highWaterMark, clock }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new FilterStep(
      () => {
        throw new Error("boom");
      },
      next,
      { highWaterMark, clock },
    ),
});
