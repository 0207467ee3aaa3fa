import torch

from denoise_studio.core.noise import DDPMNoise, GaussianNoise, make_noise


def test_perfect_prediction_reconstructs_the_clean_image():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g)
    eps = torch.randn(4, 3, 8, 8, generator=g)
    for noise in (GaussianNoise(5, 50), DDPMNoise("linear", 1000), DDPMNoise("cosine", 100)):
        level = noise.sample_levels(4, g)
        x, target = noise.corrupt(x0, level, eps)
        assert torch.allclose(noise.reconstruct(x, target, level), x0, atol=1e-4), noise
        assert not torch.allclose(x, x0)


def test_gaussian_target_is_the_added_noise_so_loss_is_image_mse():
    noise = GaussianNoise(25, 25)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    level = noise.sample_levels(2, g)
    x, target = noise.corrupt(x0, level, eps)
    assert torch.allclose(level, torch.full((2,), 25 / 255))
    assert torch.allclose(target, x - x0, atol=1e-6)   # (x0 + n) − x0 rounds in float32


def test_ddpm_level_for_sigma_inverts_sigma_of():
    for schedule in ("linear", "cosine"):
        noise = DDPMNoise(schedule, 1000)
        t = noise.level_for_sigma(25.0)
        assert abs(float(noise.sigma_of(torch.tensor([t]))[0]) * 255 - 25) < 1.0
        # prepare(y) for y = x0 + σε equals corrupt(x0) with the same ε: real noisy photos fit the process
        x0, eps = torch.rand(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
        level = torch.tensor([float(t)])
        sig = noise.sigma_of(level)
        x, _ = noise.corrupt(x0, level, eps)
        assert torch.allclose(noise.prepare(x0 + sig * eps, level), x, atol=1e-5)


def test_cosine_schedule_is_monotonic_and_config_round_trips():
    abar = DDPMNoise("cosine", 1000).alphas_cumprod
    assert (abar[1:] <= abar[:-1]).all() and abar[0] > 0.99 and abar[-1] < 0.01
    assert make_noise(DDPMNoise("cosine", 50).to_dict()) == DDPMNoise("cosine", 50)
    assert make_noise(GaussianNoise(1, 2).to_dict()) == GaussianNoise(1, 2)
