import { ProvisionError } from '../../core/provisioner.js';
import { FlyApiError, type FlyMachine } from './client/index.js';
import { describeNotRunning, failureText, looksLikeImageProblem } from './machines.js';

/** A Fly API failure as a typed ProvisionError, with Fly's message (and request id) as the reason. */
export function toProvisionError(e: unknown, app: string, region?: string, image?: string): ProvisionError {
  if (e instanceof ProvisionError) return e;
  if (!(e instanceof FlyApiError)) return new ProvisionError('START_FAILED', (e as Error)?.message ?? String(e));
  const where = `Fly app ${app}${region ? `, region ${region}` : ''}`;
  const rid = e.flyRequestId ? `; fly-request-id ${e.flyRequestId}` : '';
  if (e.isCapacity) return new ProvisionError('CAPACITY', `${e.message} (${where}; try another region${rid})`, true);
  if (e.status === 401 || e.status === 403) return new ProvisionError('BACKEND_UNAVAILABLE', `Fly refused the API token (FLY_API_TOKEN): ${e.message}${rid}`);
  if (e.status === 404 && /app/i.test(e.message)) return new ProvisionError('INVALID_CONFIG', `${e.message} (${where}: does FLY_WORKSPACE_APP exist?)${rid}`);
  if ((e.status === 400 || e.status === 422) && image && looksLikeImageProblem(e.message) && /manifest|pull|image/i.test(e.message)) {
    return new ProvisionError('IMAGE_NOT_FOUND', `${e.message} (image ${image}${rid})`);
  }
  if (e.status === 400 || e.status === 422) return new ProvisionError('INVALID_CONFIG', `${e.message} (${where}${rid})`);
  if (e.retryable) return new ProvisionError('BACKEND_UNAVAILABLE', `Fly Machines API unavailable: ${e.message}${rid}`, true);
  return new ProvisionError('START_FAILED', `${e.message} (${where}${rid})`);
}

/** Why a machine that should be booting is not: an image problem when its failure says so. */
export function bootFailure(m: FlyMachine, image: string): ProvisionError {
  if (m.state === 'failed') {
    const text = failureText(m) ?? 'machine failed';
    return new ProvisionError(looksLikeImageProblem(text) ? 'IMAGE_NOT_FOUND' : 'START_FAILED', `machine ${m.id} failed to boot ${image}: ${text}`);
  }
  return new ProvisionError('START_FAILED', `machine ${m.id} did not start: ${describeNotRunning(m)}`);
}

