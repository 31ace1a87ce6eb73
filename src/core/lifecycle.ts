import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Sealer } from './crypto.js';
import type { EventBus } from './events.js';
import type { Stores, Transact } from './ports.js';
import type { Provisioner } from './provisioner.js';
import { IdleWatcher } from './idle.js';
import { Reconciler, type ReconcilerDeps } from './reconciler.js';
import { SecretService } from './secrets.js';
import { WorkspaceService } from './workspaces.js';

export interface LifecycleDeps {
  config: Config;
  stores: Stores & { transact: Transact };
  bus: EventBus;
  provisioner: Provisioner;
  sealer: Sealer;
  logger: Logger;
  platformUrl: ReconcilerDeps['platformUrl'];
  mayAct: ReconcilerDeps['mayAct'];
  probe?: ReconcilerDeps['probe'];
}

/**
 * The workspace lifecycle, wired once (the platform and the unit tests build it the same way): the services that
 * record what is asked, and the reconciler that makes it so — inactive until this replica leads.
 */
export function createLifecycle(d: LifecycleDeps) {
  const { workspaces, tokens, secrets, transact } = d.stores;
  const svc = new WorkspaceService({ config: d.config, transact, workspaces, tokens, secrets, bus: d.bus, provisioner: d.provisioner, sealer: d.sealer, logger: d.logger });
  const secretService = new SecretService({ secrets, workspaces, sealer: d.sealer, bus: d.bus, liveWorkspace: (id) => svc.get(id) });
  const reconciler = new Reconciler({ ...d, workspaces, secrets, svc });
  // Idle workspaces sleep (core/idle.ts): looked for by the replica that reconciles.
  const idle = new IdleWatcher({ config: d.config, workspaces, logger: d.logger, activity: svc.activity, isActive: () => reconciler.isActive && d.mayAct(), sleep: (ws, why) => svc.sleep(ws, why) });
  return { svc, secretService, reconciler, idle };
}
