/**
 * Validators of numeric options (private: not exported from `mod.ts`). Each throws a
 * {@link ConfigurationError} that names the option, what it got and what to pass.
 *
 * @module
 */
import { ConfigurationError } from "./errors.ts";

/**
 * Validates that `value` is a positive integer, or throws a {@link ConfigurationError}
 * naming the option.
 *
 * @example
 * ```ts
 * import { requirePositiveInteger } from "./_validate.ts";
 * const hwm = requirePositiveInteger("highWaterMark", 100); // 100
 * ```
 */
export function requirePositiveInteger(name: string, value: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new ConfigurationError(
      `${name} must be a positive integer, got ${String(value)}; pass a whole number >= 1`,
    );
  }
  return value;
}

/**
 * Validates that `value` is a finite number >= 0 (a duration in milliseconds, a size...).
 *
 * @example
 * ```ts
 * import { requireNonNegative } from "./_validate.ts";
 * requireNonNegative("joinTimeoutMs", 25_000);
 * ```
 */
export function requireNonNegative(name: string, value: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new ConfigurationError(
      `${name} must be a finite number >= 0, got ${String(value)}; durations are in milliseconds`,
    );
  }
  return value;
}
