export function agentIsStale(): boolean;
export function uiIsStale(): boolean;
export function staleParts(): string[];
