import { describe, expect, it } from 'vitest';
import { BuiltinResponder, builtinAnswer, chunkText, detectTopics, NO_MODEL_HINT } from '../../src/agent/responder.js';
import { Workspace, type WorkspaceSnapshot } from '../../src/agent/workspace.js';

const facts: WorkspaceSnapshot = {
  id: 'ws-0123',
  name: 'alpha',
  role: 'Research assistant',
  region: 'ord',
  tier: 3,
  runtime: 'hermes',
  uptime_s: 3725,
};

describe('built-in responder', () => {
  it('answers the seed question with the region', () => {
    expect(builtinAnswer('What region are you running in?', facts)).toBe("I'm running in region ord.");
    expect(builtinAnswer('where are you hosted?', { ...facts, region: 'fra' })).toContain('fra');
  });

  it('answers each workspace fact', () => {
    expect(builtinAnswer('What is your workspace id?', facts)).toBe('My workspace id is ws-0123.');
    expect(builtinAnswer("what's your name", facts)).toBe('My name is alpha.');
    expect(builtinAnswer('What is your role?', facts)).toBe('My role is: Research assistant.');
    expect(builtinAnswer('Which tier are you on?', facts)).toBe("I'm on tier 3 (2 GB of memory, 2 CPUs).");
    expect(builtinAnswer('Which runtime do you use?', facts)).toBe('My runtime is hermes.');
    expect(builtinAnswer('What is your uptime?', facts)).toBe("I've been up for 1h 2m 5s (3725 s).");
    expect(builtinAnswer('how long have you been running?', facts)).toContain('3725 s');
  });

  it('combines several facts in one answer', () => {
    const answer = builtinAnswer('What is your name and which region and tier?', facts);
    expect(answer).toBe("My name is alpha. I'm running in region ord. I'm on tier 3 (2 GB of memory, 2 CPUs).");
  });

  it('says when no role is set', () => {
    expect(builtinAnswer('what is your role', { ...facts, role: '' })).toBe('No role has been set for this workspace.');
  });

  it('introduces itself for "who are you" and "what can you do"', () => {
    for (const q of ['Who are you?', 'what can you do', 'hello there']) {
      const answer = builtinAnswer(q, facts);
      expect(answer).toContain('alpha');
      expect(answer).toContain('ws-0123');
      expect(answer).toContain('region ord');
      expect(answer).toContain(NO_MODEL_HINT);
    }
  });

  it('explains how to configure a model for anything else', () => {
    const answer = builtinAnswer('Write me a haiku about the sea', facts);
    expect(answer).toBe(NO_MODEL_HINT);
    expect(answer).toContain('OPENAI_API_KEY');
    expect(answer).toContain('OPENAI_BASE_URL');
    expect(answer).toContain('MODEL');
    expect(answer).toContain('ANTHROPIC_API_KEY');
    expect(answer).toContain('restart the workspace');
  });

  it('does not take unrelated words for workspace topics', () => {
    expect(detectTopics('What is the name of the capital of France?')).toEqual([]);
    expect(detectTopics('did you see that?')).toEqual([]);
    expect(detectTopics('What region are you running in?')).toEqual(['region']);
  });

  it('chunks text so that the chunks concatenate back exactly', () => {
    const text = "I'm alpha, the agent of workspace ws-0123.  It has   odd spacing\nand lines.";
    const chunks = chunkText(text, 16);
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.join('')).toBe(text);
    expect(chunkText('')).toEqual([]);
  });

  it('streams its answer through onText in several chunks', async () => {
    const responder = new BuiltinResponder(new Workspace({ ...facts }));
    const deltas: string[] = [];
    const answer = await responder.respond({
      system: '',
      history: [],
      userText: 'Who are you?',
      signal: new AbortController().signal,
      onText: (d) => deltas.push(d),
    });
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(answer);
  });

  it('stops streaming when aborted', async () => {
    const responder = new BuiltinResponder(new Workspace({ ...facts }));
    const controller = new AbortController();
    const deltas: string[] = [];
    const done = responder.respond({
      system: '',
      history: [],
      userText: 'Who are you?',
      signal: controller.signal,
      onText: (d) => {
        deltas.push(d);
        controller.abort(new Error('stop'));
      },
    });
    await expect(done).rejects.toThrow('stop');
    expect(deltas).toHaveLength(1);
  });
});
