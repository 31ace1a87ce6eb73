/**
 * Runtimes a workspace can ask for. Each maps to an image for container backends; the process backend runs the
 * built-in agent for every runtime. Only runtimes we actually ship are listed.
 */
export const RUNTIMES = ['hermes'] as const;

/** Image for a runtime: MOLECULE_RUNTIME_IMAGE_<RUNTIME> overrides the `{runtime}` template. */
export function imageFor(runtime: string, template: string, env: NodeJS.ProcessEnv = process.env): string {
  const override = env[`MOLECULE_RUNTIME_IMAGE_${runtime.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`];
  return override || template.replaceAll('{runtime}', runtime);
}
