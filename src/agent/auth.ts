import { createHash, timingSafeEqual } from 'node:crypto';
import type { User } from '@a2a-js/sdk/server';

/**
 * Checks `Authorization: Bearer <token>` against the agent token in constant time. Both sides are hashed first so
 * the comparison does not leak the token's length either.
 */
export function bearerMatches(header: string | string[] | undefined, expected: string): boolean {
  if (typeof header !== 'string') return false;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!match) return false;
  const given = createHash('sha256').update(match[1]!).digest();
  const wanted = createHash('sha256').update(expected).digest();
  return timingSafeEqual(given, wanted);
}

/**
 * Everyone holding the agent token is the same caller (the platform's A2A proxy). A fixed user keeps the SDK's
 * per-user task scoping consistent, so tasks/get finds tasks created by an earlier message/stream.
 */
export const PLATFORM_CALLER: User = {
  isAuthenticated: true,
  userName: 'molecule-platform',
};

/** Server-defined JSON-RPC code (-32001 is TaskNotFound, so the auth failure lives further up the range). */
export const UNAUTHORIZED_CODE = -32040;
export const UNAUTHORIZED_MESSAGE = 'missing or invalid agent token';
