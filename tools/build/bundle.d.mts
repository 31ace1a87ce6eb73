export const ROOT: string;
export const DIST: string;
export const BUNDLES: Record<'platform' | 'cli', { entry: string; out: string }>;
export function buildBundle(name: 'platform' | 'cli'): Promise<string>;
export function newestInput(): number;
export function isStale(name: 'platform' | 'cli'): boolean;
export function ensureBundles(names?: ('platform' | 'cli')[]): Promise<string[]>;
export function bundleUrl(name: 'platform' | 'cli'): string;
