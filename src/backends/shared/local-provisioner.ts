import type { InstanceEvent, InstanceHandle, InstanceSpec } from '../../core/provisioner.js';
import { InstanceWatch } from './instance-watch.js';

/**
 * What the backends running agents on this host share. Resume and restart make a new instance from the spec
 * rather than waking the old one: the platform rotates tokens on every launch and may have changed env, secrets,
 * image or tier; what must survive (the volume, the log file) is keyed by the instance id, not by the instance.
 */
export abstract class LocalProvisioner {
  readonly defaultRegion = 'local';
  protected readonly instances = new InstanceWatch();

  abstract start(spec: InstanceSpec): Promise<InstanceHandle>;

  watch(listener: (ev: InstanceEvent) => void): () => void {
    return this.instances.subscribe(listener);
  }

  async resume(_instanceId: string, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.start(spec);
  }

  async restart(_instanceId: string | null, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.start(spec);
  }
}
