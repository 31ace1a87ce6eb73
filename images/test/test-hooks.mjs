// Preloaded into the agent by the test image only (images/test/Dockerfile).
// SIGUSR2 makes the agent allocate and touch memory without bound, so a test can prove that the tier's memory
// limit is enforced by the engine (the kernel OOM-kills the agent) and that the platform records why and restarts it.
process.on('SIGUSR2', () => {
  process.stderr.write('[test-hooks] SIGUSR2: allocating memory until the limit stops this process\n');
  const held = [];
  const grow = () => {
    held.push(Buffer.alloc(16 * 1024 * 1024, 1));
    setImmediate(grow);
  };
  grow();
});
