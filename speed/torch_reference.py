"""AGAD's networks and train step as a PyTorch user would write them: the reference that
``speed/bench.py`` times jaxad against (``Reference``).

The networks of docs/method.md with the AdvProp auxiliary BatchNorm, GANomaly's weight
initialisation, and the same G-then-D step at gamma = 0. Importing this module imports torch
(``pip install -e ".[bench]"``); ``speed.bench`` runs without it.
"""

from __future__ import annotations

import torch
import torch.nn as tnn
import torch.nn.functional as F


def scaled(c, width):
    """A channel count scaled by the width factor, at least 1 (as ``jaxad.models`` scales)."""
    return max(1, int(round(c * width)))


class DualBN(tnn.Module):
    """BatchNorm with an AdvProp auxiliary copy; ``aux`` is switched by ``set_aux``."""

    def __init__(self, c, advprop):
        super().__init__()
        self.main = tnn.BatchNorm2d(c)
        self.aux_bn = tnn.BatchNorm2d(c) if advprop else None
        self.aux = False

    def forward(self, x):
        return self.aux_bn(x) if self.aux else self.main(x)


def set_aux(module, flag: bool):
    """Route every ``DualBN`` of ``module`` through its auxiliary copy (``flag``) or its main one."""
    for mod in module.modules():
        if isinstance(mod, DualBN):
            mod.aux = flag


def encoder(nc, width, latent, advprop):
    """DCGAN encoder at 32x32: the layers and their last channel count (``latent`` 0: no code layer)."""
    ch = scaled(64, width)
    layers = [tnn.Conv2d(nc, ch, 4, 2, 1, bias=False), tnn.LeakyReLU(0.2, inplace=True)]
    for _ in range(2):
        layers += [tnn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False), DualBN(2 * ch, advprop),
                   tnn.LeakyReLU(0.2, inplace=True)]
        ch *= 2
    if latent:
        layers.append(tnn.Conv2d(ch, latent, 4, 1, 0, bias=False))
    return tnn.Sequential(*layers), ch


class NaiveG(tnn.Module):
    """The naive generator: DCGAN encoder to a 100-d code, DCGAN decoder back."""

    def __init__(self, nc, width, advprop):
        super().__init__()
        self.encoder, ch = encoder(nc, width, 100, advprop)
        layers = [tnn.ConvTranspose2d(100, ch, 4, 1, 0, bias=False), DualBN(ch, advprop), tnn.ReLU(True)]
        for _ in range(2):
            layers += [tnn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), DualBN(ch // 2, advprop),
                       tnn.ReLU(True)]
            ch //= 2
        layers += [tnn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), tnn.Tanh()]
        self.decoder = tnn.Sequential(*layers)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class Node(tnn.Module):
    """A U-Net node: two 3x3 convolutions, each with BatchNorm and ReLU."""

    def __init__(self, cin, c, advprop):
        super().__init__()
        self.net = tnn.Sequential(tnn.Conv2d(cin, c, 3, 1, 1, bias=False), DualBN(c, advprop), tnn.ReLU(True),
                                  tnn.Conv2d(c, c, 3, 1, 1, bias=False), DualBN(c, advprop), tnn.ReLU(True))

    def forward(self, x):
        return self.net(x)


class NestedUNet(tnn.Module):
    """UNet (``nested`` False) or UNet++ (True), five levels."""

    def __init__(self, nc, width, nested, advprop):
        super().__init__()
        f = [scaled(c, width) for c in (32, 64, 128, 256, 512)]
        self.f, self.nested, L = f, nested, 5
        self.nodes, self.ups = tnn.ModuleDict(), tnn.ModuleDict()
        for i in range(L):
            self.nodes[f"{i}_0"] = Node(nc if i == 0 else f[i - 1], f[i], advprop)
        if nested:
            for j in range(1, L):
                for i in range(L - j):
                    self.ups[f"{i}_{j}"] = tnn.ConvTranspose2d(f[i + 1], f[i], 2, 2)
                    self.nodes[f"{i}_{j}"] = Node(f[i] * (j + 1), f[i], advprop)
        else:
            for i in reversed(range(L - 1)):
                j = L - 1 - i
                self.ups[f"{i}_{j}"] = tnn.ConvTranspose2d(f[i + 1], f[i], 2, 2)
                self.nodes[f"{i}_{j}"] = Node(2 * f[i], f[i], advprop)
        self.out = tnn.Conv2d(f[0], nc, 1)

    def forward(self, x):
        L, grid = 5, {}
        h = x
        for i in range(L):
            h = self.nodes[f"{i}_0"](h if i == 0 else F.max_pool2d(h, 2))
            grid[i, 0] = h
        if self.nested:
            for j in range(1, L):
                for i in range(L - j):
                    up = self.ups[f"{i}_{j}"](grid[i + 1, j - 1])
                    grid[i, j] = self.nodes[f"{i}_{j}"](torch.cat([grid[i, k] for k in range(j)] + [up], 1))
            out = grid[0, L - 1]
        else:
            h = grid[L - 1, 0]
            for i in reversed(range(L - 1)):
                j = L - 1 - i
                h = self.nodes[f"{i}_{j}"](torch.cat([grid[i, 0], self.ups[f"{i}_{j}"](h)], 1))
            out = h
        return torch.tanh(self.out(out))


class Disc(tnn.Module):
    """The DCGAN discriminator: a logit and the features the latent loss compares."""

    def __init__(self, nc, width):
        super().__init__()
        self.features, ch = encoder(nc, width, 0, False)
        self.classifier = tnn.Conv2d(ch, 1, 4, 1, 0, bias=False)

    def forward(self, x):
        feat = self.features(x)
        return self.classifier(feat).view(-1), feat


def init_weights(module):
    # GANomaly's init: conv weights N(0, 0.02), BN scale N(1, 0.02), biases 0.
    for mod in module.modules():
        if isinstance(mod, (tnn.Conv2d, tnn.ConvTranspose2d)):
            tnn.init.normal_(mod.weight, 0.0, 0.02)
            if mod.bias is not None:
                tnn.init.zeros_(mod.bias)
        elif isinstance(mod, tnn.BatchNorm2d):
            tnn.init.normal_(mod.weight, 1.0, 0.02)
            tnn.init.zeros_(mod.bias)


class Reference:
    """AGAD's step (gamma = 0) as a PyTorch user would write it, GANomaly-style.

    G: x_hat = G(x); x_hat2 = G(x_hat) through the auxiliary BN (AdvProp);
    L_G = w_adv bce(D(x_hat), 1) + w_con L1(x, x_hat) - w_adcon L1(x_hat, x_hat2)
          + w_lat L2(f(x), f(x_hat)); Adam step on G (D's parameters frozen meanwhile,
    so no D weight gradients are computed). D: bce(D(x), 1) + bce(D(x_hat.detach()), 0);
    Adam step on D; GANomaly's reset of D when its loss falls below 1e-5.
    """

    def __init__(self, backbone, nc, width, advprop=True, lr=2e-4, betas=(0.5, 0.999), device="cpu"):
        torch.manual_seed(0)
        if backbone == "naive":
            self.G = NaiveG(nc, width, advprop)
        else:
            self.G = NestedUNet(nc, width, backbone == "unetpp", advprop)
        self.D = Disc(nc, width)
        self.G.to(device)
        self.D.to(device)
        init_weights(self.G)
        init_weights(self.D)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr, betas=betas)
        self.advprop = advprop
        self.w = (1.0, 50.0, 15.0, 5.0)

    def _d_requires_grad(self, flag):
        for p in self.D.parameters():
            p.requires_grad_(flag)

    def step(self, x):
        w_adv, w_con, w_adcon, w_lat = self.w
        self.G.train()
        self.D.train()
        x_hat = self.G(x)
        set_aux(self.G, self.advprop)
        x_hat2 = self.G(x_hat)
        set_aux(self.G, False)
        self._d_requires_grad(False)
        with torch.no_grad():
            _, feat_real = self.D(x)
        logit_fake, feat_fake = self.D(x_hat)
        loss_g = (w_adv * F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))
                  + w_con * F.l1_loss(x_hat, x) - w_adcon * F.l1_loss(x_hat2, x_hat)
                  + w_lat * F.mse_loss(feat_fake, feat_real))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self._d_requires_grad(True)
        logit_real, _ = self.D(x)
        logit_fake, _ = self.D(x_hat.detach())
        loss_d = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                  + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        if loss_d.item() < 1e-5:
            init_weights(self.D)
        return float(loss_g.detach()), float(loss_d.detach())

    @torch.inference_mode()
    def score(self, x):
        self.G.eval()
        diff = (x - self.G(x)).flatten(1)
        return diff.square().sum(1).sqrt()


def n_params(module):
    """The number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())
