/** What a test does when this machine lacks something it needs (root, a tool, network namespaces). */

/**
 * Skips the calling test or hook; under CI=true throws `reason` instead, so the CI machine (root,
 * every tool installed) cannot silently lose coverage.
 */
export function unavailable(ctx: Mocha.Context, reason: string): never {
  if (process.env.CI === 'true') throw new Error(reason);
  ctx.skip();
}
