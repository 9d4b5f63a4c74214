import { Noop } from "../../strategies/noop.ts";
import { strategyContract } from "../_support/contract.ts";

strategyContract<number>({
  name: "Noop",
  terminal: true,
  commits: false,
  make: ({ highWaterMark, clock }) => new Noop({ highWaterMark, clock }),
});
