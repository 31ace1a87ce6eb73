import { Api, ApiCallError } from './api.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A workspace by full id, id prefix (as `molecule ls` prints it) or exact name, so people
 * can type what they see. Ambiguity is an error that lists the candidates, never a guess.
 */
export async function resolveWorkspace(api: Api, ref: string): Promise<string> {
  if (UUID.test(ref)) return ref.toLowerCase();
  const all = await api.pages<{ id: string; name: string; status: string }>('/workspaces');
  const byName = all.filter((w) => w.name === ref);
  const byPrefix = ref.length >= 4 ? all.filter((w) => w.id.startsWith(ref.toLowerCase())) : [];
  const matches = [...new Map([...byName, ...byPrefix].map((w) => [w.id, w])).values()];
  if (matches.length === 1) return matches[0].id;
  if (matches.length === 0) throw new ApiCallError(404, 'not_found', `no workspace with id, id prefix (4+ characters) or name "${ref}"`);
  const list = matches.map((w) => `  ${w.id}  ${w.name}  ${w.status}`).join('\n');
  throw new ApiCallError(409, 'ambiguous', `"${ref}" matches ${matches.length} workspaces; use the id:\n${list}`);
}
