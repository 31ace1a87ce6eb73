import { buildAgentBundle } from '../../src/agent/build.js';

/** Every test that starts agents gets the bundled agent (fast boots), built once per run from the current sources. */
export default async function setup(): Promise<void> {
  await buildAgentBundle();
}
