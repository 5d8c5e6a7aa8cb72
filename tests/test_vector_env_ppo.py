"""PPO on environments nobody here wrote: any gymnasium VectorEnv through
Learner.for_vector_env. The canary: CartPole-v1 with CleanRL's hyper-parameters."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import meshrl.ppo

# CleanRL's ppo.py defaults for CartPole-v1 (4 envs, 128 steps, 4 minibatches, 4 epochs).
CLEANRL = dict(num_steps=128, learning_rate=2.5e-4, anneal_lr=True, gamma=0.99, gae_lambda=0.95, epochs=4,
               minibatch_size=128, clip_epsilon=0.2, clip_value_loss=True, entropy_coef=0.01, value_coef=0.5,
               max_grad_norm=0.5, device="cpu")


def cartpole(n=4, mode=AutoresetMode.SAME_STEP):
    return gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cartpole_reaches_475_within_500k_steps(seed):
    envs = cartpole()
    trainer = meshrl.ppo.Learner.for_vector_env(envs, dict(CLEANRL, seed=seed))
    curve = []

    def callback(stats):
        curve.append((stats["global_step"], stats["charts/episodic_return"]))
        return stats["charts/episodic_return"] < 475  # stop once the bar is crossed

    trainer.train_vector_env(envs, 500_000, callback)
    step, ret = curve[-1]
    print(f"seed {seed}: mean return of the last 100 episodes {ret:.1f} at step {step}")
    assert ret >= 475 and step <= 500_000, f"seed {seed}: best {max(r for _, r in curve):.1f}"


def test_vector_env_path_errors_are_clear():
    with pytest.raises(ValueError, match="SAME_STEP"):
        envs = cartpole(mode=AutoresetMode.NEXT_STEP)
        meshrl.ppo.Learner.for_vector_env(envs, CLEANRL).train_vector_env(envs, 1000)
    with pytest.raises(ValueError, match="Discrete"):
        meshrl.ppo.Learner.for_vector_env(gym.make_vec("Pendulum-v1", num_envs=2), CLEANRL)
    with pytest.raises(ValueError, match="unknown PPO setting"):
        meshrl.ppo.Learner.for_vector_env(cartpole(), dict(CLEANRL, lr=1))
    trainer = meshrl.ppo.Learner.for_vector_env(cartpole(), CLEANRL)
    core = trainer._core
    obs = np.zeros(16, np.float32)
    mask = np.ones(8, np.int8)
    actions, logps, values = core.sample(obs, mask)
    assert actions.shape == (4,) and set(actions) <= {0, 1} and np.all(logps <= 0)
    with pytest.raises(ValueError, match="rewards"):
        core.store_transition(obs, mask, actions, logps, values, np.zeros(3, np.float32), np.zeros(4, bool))
    with pytest.raises(ValueError, match="outside 0..2"):
        core.store_transition(obs, mask, actions + 5, logps, values, np.zeros(4, np.float32), np.zeros(4, bool))
    with pytest.raises(ValueError, match="obs"):
        core.sample(np.zeros(15, np.float32), mask)
    with pytest.raises(ValueError, match="rollout"):
        core.update_from_buffer(obs, 1e-3)  # nothing stored
