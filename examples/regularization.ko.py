# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 정규화 기법, 하나씩 살펴보기
#
# 정규화(regularization)는 학습을 일부러 까다롭게 만들어 신경망이 학습 이미지에만 들어맞는 과대적합을 막고, 익힌 것이
# 처음 보는 이미지에서도 통하게 하는 기법이다. 모래주머니를 차고 연습한 달리기 선수가 주머니를 벗으면 더 빨리 달리는
# 것과 같은 이치다. 테스트 세트는 그 처음 보는 이미지의 역할을 맡아, 실제로 쓰기 전에 해 보는 리허설이 된다.
#
# 이 노트북은 sandbag의 바탕이 된 강의의 순서를 따른다. 기준 CNN에서 출발해 L2 벌점, L1 벌점, 잡음 주입, 드롭아웃,
# 배치 정규화를 차례로 보고, 마지막에는 이 기법들에 대한 주장을 확인하는 작은 연구(study)를 돌린다. sandbag의 공개
# API만 쓴다. 모든 모델은 MNIST 숫자 300장으로 20 에포크를 학습한다. 정규화하지 않은 신경망이 학습
# 이미지에 맞고 테스트는 그보다 한참 낮아지는, 기법이 할 일이 있는 조건이면서도 셀마다 CPU에서 몇 초면 끝난다. 숫자는
# 시드와 기계에 따라 달라지므로, 본문은 어떤 값이 나올지 못 박지 않고 무엇을 눈여겨보면 되는지를 말한다.

# %%
import copy
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from sandbag import analysis
from sandbag.fonts import use_hangul_font
from sandbag.models import build_model, keras_summary
from sandbag.regularizers import Regularizer, parse_spec, parse_specs, penalized_parameters
from sandbag.runs import RunConfig
from sandbag.study import StudyConfig, build_report, compare_config, planned_arms, read_results, run_study
from sandbag.study.report import localized_verdicts
from sandbag.train import evaluate, load_data, setup_run, train_one_epoch, weight_stats

torch.set_num_threads(2)
torch.manual_seed(0)
use_hangul_font()  # 그림의 한글: 시스템에 있는 한글 글꼴(예: 나눔고딕)을 matplotlib에 등록한다
plt.rcParams.update({"figure.dpi": 72, "figure.constrained_layout.use": True, "axes.grid": True,
                     "grid.alpha": 0.3})

TRAIN_SIZE, EPOCHS = 300, 20  # 과대적합이 일어나는 조건: 머리말 참고
# mnist-5k: 실제 MNIST 숫자 5,000장. 층화·시드 고정으로 뽑은 300장으로 학습하고, 따로 떼어 둔 1,000장으로 테스트한다
DATA = load_data(RunConfig(data="mnist-5k", train_size=TRAIN_SIZE))
X_TEST, Y_TEST = DATA.x_test, DATA.y_test
print(DATA)


def train(*regs: str, epochs: int = EPOCHS, seed: int = 0):
    """주어진 기법 설정으로 기준 CNN을 학습하고 sandbag의 RunSetup(.model, .ds, ...)을 돌려준다."""
    cfg = RunConfig(regs=list(regs), epochs=epochs, train_size=TRAIN_SIZE, seed=seed, device="cpu", threads=2)
    run = setup_run(cfg, dataset=DATA)  # 가중치 시드 고정, 모델 생성, 기법을 파라미터에 연결
    for _ in range(epochs):
        train_one_epoch(run.net, run.optimizer, run.regularizer, run.ds.x_train, run.ds.y_train, cfg.batch_size,
                        run.generator)
    return run


def accuracy(run) -> dict:
    """평가 모드에서 잰 학습 이미지 정확도와 테스트 이미지 정확도."""
    return {split: evaluate(run.model, x, y)["acc"]
            for split, x, y in [("train", run.ds.x_train, run.ds.y_train), ("test", X_TEST, Y_TEST)]}


# %% [markdown]
# ## 1. 데이터와 기준 모델
#
# 기준 모델은 강의에 나오는 Keras CNN이다. 3×3 합성곱 세 개 사이에 최대 풀링과 평균 풀링이 끼어 있고, 유닛 128개의
# 완전연결층과 클래스 10개의 출력층이 뒤따른다. 여기서는 강의처럼 은닉 완전연결층 뒤에 유지 비율 0.6의 드롭아웃 층을
# 넣었다. 드롭아웃은 층을 하나 보탤 뿐 파라미터가 없으므로 파라미터 수는 그대로 241,546개다.

# %%
fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for digit, ax in enumerate(axes):
    ax.imshow(DATA.x_train[DATA.y_train == digit][0, 0], cmap="gray_r")
    ax.set_title(str(digit))
    ax.axis("off")
fig.suptitle("클래스마다 학습 이미지 한 장 (mnist-5k)")
plt.show()

model = build_model("ref-cnn", DATA.input_shape, DATA.num_classes, parse_specs(["keep=0.6"]))
print(keras_summary(model, DATA.input_shape))

# %% [markdown]
# ## 2. L2: 큰 가중치에 매기는 벌점
#
# L2는 가중치 제곱합의 절반에 강도 λ를 곱해 손실에 더한다: L' = L + ½·λ·Σw². 큰 가중치가 손해가 되므로 학습은 더 작은
# 가중치로 문제를 풀게 된다(그래서 가중치 감쇠라고도 부른다). 먼저 가중치 하나로 그림을 그려 보자. 최솟점이 w = 4.5에
# 있는 손실, 벌점 ½·w², 그리고 여러 λ에 대해 둘을 더한 곡선이다. 곡률이 a인 손실이라면 합의 최솟점은 a·4.5/(a + λ)이다
# (여기서는 a = 1). λ가 커질수록 최솟점은 0 쪽으로 다가가지만 0에 닿지는 않는다. 아래의 격자 탐색 결과는 격자 간격
# 안에서 이 식과 맞아야 한다.

# %%
w = np.linspace(-2.0, 7.0, 9001)
loss = 0.5 * (w - 4.5) ** 2  # 가중치 하나의 손실, w = 4.5에서 가장 작다 (곡률 a = 1)
lams = [0.0, 0.5, 1.0, 2.0, 4.0]
grid_minima = [w[np.argmin(loss + 0.5 * lam * w**2)] for lam in lams]

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
left.plot(w, loss, "k--", label="손실 L(w)")
left.plot(w, 0.5 * w**2, "k:", label="벌점 ½·w²")
for lam, w_min in zip(lams[1:], grid_minima[1:], strict=True):
    total = loss + 0.5 * lam * w**2
    (line,) = left.plot(w, total, label=f"L + ½·{lam:g}·w²")
    left.plot(w_min, total.min(), "o", color=line.get_color())
left.set(ylim=(0, 16), xlabel="가중치 w", ylabel="값", title="손실에 ½·λ·w²를 더하면")
left.legend(fontsize=8)
right.plot(lams, grid_minima, "o-", label="격자 위의 최솟점")
right.plot(lams, [4.5 / (1 + lam) for lam in lams], "kx", ms=10, label="4.5 / (1 + λ)")
right.set(xlabel="λ", ylabel="최솟점의 w", title="최솟점이 0 쪽으로 옮겨 간다", ylim=(0, 5))
right.legend()
plt.show()
for lam, w_min in zip(lams, grid_minima, strict=True):
    print(f"λ = {lam:<4g} 격자 위의 최솟점 {w_min:.3f}   공식 {4.5 / (1 + lam):.3f}")

# %% [markdown]
# 이번에는 실제 신경망이다. 같은 시드로 두 번, 한 번은 아무 기법 없이, 한 번은 `l2=5e-3`으로 20 에포크씩 학습한다.
# 벌점을 준 쪽의 가중치 노름이 전체로도 층별로도 더 작게 끝나야 한다(얼마나 작아지는지는 λ, 옵티마이저, 학습 길이에
# 따라 다르다).

# %%
LAM = 5e-3
base = train()
l2 = train(f"l2={LAM}")


def layer_norms(run) -> dict:
    """벌점을 받는 가중치 텐서마다의 L2 노름, 층 이름별로."""
    return {name.split(".")[0]: p.detach().norm().item() for name, p in penalized_parameters(run.model)}


names = list(layer_norms(base))
x = np.arange(len(names))
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(x - 0.2, list(layer_norms(base).values()), 0.4, label="정규화 없음")
ax.bar(x + 0.2, list(layer_norms(l2).values()), 0.4, label=f"l2={LAM}")
ax.set_xticks(x, names)
ax.set(ylabel="층의 ‖w‖", title="학습 후 층별 가중치 노름")
ax.legend()
plt.show()
acc = {"none": accuracy(base), f"l2={LAM}": accuracy(l2)}
for label, run in [("none", base), (f"l2={LAM}", l2)]:
    print(f"{label:9} 전체 가중치 노름 {weight_stats(run.model)['weight_l2']:6.2f}   "
          f"정확도: 학습 {acc[label]['train']:.3f}, 테스트 {acc[label]['test']:.3f}")

# %% [markdown]
# 편향(bias)은 벌점에서 빠진다. 벌점은 합성곱층과 완전연결층의 가중치에만 걸리고, `:bias`를 붙여야 편향도 들어간다.
# 이것을 정하는 규칙은 `penalized_parameters` 하나뿐이다. 숫자로 확인해 보자. 벌점을 손으로 계산해 맞춰 본 다음, 모델
# 사본의 모든 편향에 10을 더한다. 기본 벌점은 그대로여야 하고 `:bias` 쪽만 커져야 한다.

# %%
spec, spec_bias = parse_specs([f"l2={LAM}"]), parse_specs([f"l2={LAM}:bias"])
weights = [name for name, _ in penalized_parameters(base.model)]
with_bias = [name for name, _ in penalized_parameters(base.model, include_bias=True)]
print("기본으로 벌점을 받는 파라미터:", weights)
print(":bias가 더하는 파라미터:      ", [name for name in with_bias if name not in weights])

by_hand = 0.5 * LAM * sum(p.detach().pow(2).sum().item() for _, p in penalized_parameters(base.model))
print(f"손으로 계산한 벌점 {by_hand:.6f}   Regularizer.penalty() {Regularizer(base.model, spec).penalty().item():.6f}")

shifted = copy.deepcopy(base.model)
with torch.no_grad():
    for name, p in shifted.named_parameters():
        if name.endswith("bias"):
            p.add_(10.0)
for label, specs in [(f"l2={LAM}", spec), (f"l2={LAM}:bias", spec_bias)]:
    before, after = Regularizer(base.model, specs).penalty().item(), Regularizer(shifted, specs).penalty().item()
    print(f"{label:16} 벌점 {before:10.4f} -> {after:10.4f} (모든 편향에 10을 더한 뒤)")

# %% [markdown]
# ## 3. L1: 가중치를 0으로 만드는 벌점
#
# L1은 α·Σ|w|를 더한다. 0 쪽으로 당기는 힘이 가중치가 크든 작든 똑같아서, 작은 가중치는 아예 0까지 밀려난다. 위의
# 가중치 하나짜리 손실이라면 최솟점은 max(4.5 − α, 0)이 된다. α만큼 옮겨 가다가 α ≥ 4.5가 되면 정확히 0에 멈추는데,
# L2에서는 일어나지 않는 일이다. 실제 학습에서는 |w|에 대한 경사 하강 한 걸음이 0에서 멈추지 않고 넘어가 버리므로,
# 보통의 `l1=α`는 0 근처의 가중치를 많이 남기지만 정확히 0인 가중치는 드물다. 근위(proximal) 형태인 `l1=α:prox`는
# 옵티마이저가 한 걸음 간 뒤에 가중치를 줄이면서 0에서 잘라 내므로 정확한 0을 만든다. 대부분이 0인 희소한 가중치
# 텐서가 필요할 때 L1을 고르는 것도 이 때문이다. log10|w| 히스토그램에서는 L1을 쓴 쪽이 아주 작은 크기(|w| = 10⁻³을
# 나타내는 점선의 왼쪽)에 가중치를 더 많이 가져야 한다. 정확히 0인 가중치는 로그를 취할 수 없어서 제목에 개수를
# 적었는데, `:prox`에서만 나와야 한다.

# %%
ALPHA = 1e-4
l1 = train(f"l1={ALPHA}")
l1_prox = train(f"l1={ALPHA}:prox")

alphas = np.linspace(0, 6, 61)
fig, axes = plt.subplots(1, 4, figsize=(14, 3))
axes[0].plot(alphas, [w[np.argmin(loss + a * np.abs(w))] for a in alphas], label="L1: 손실 + α·|w|")
axes[0].plot(alphas, [w[np.argmin(loss + 0.5 * a * w**2)] for a in alphas], "--", label="L2: 손실 + ½·α·w²")
axes[0].set(xlabel="강도 α (또는 λ)", ylabel="최솟점의 w", title="가중치 하나")
axes[0].legend(fontsize=8)
for ax, (label, run) in zip(axes[1:], [("none", base), (f"l1={ALPHA}", l1), (f"l1={ALPHA}:prox", l1_prox)],
                            strict=True):
    values = analysis.weight_values(run.model)
    ax.hist(np.log10(np.abs(values[values != 0])), bins=np.linspace(-8, 0, 81), log=True)
    ax.axvline(-3, color="k", ls=":")  # |w| = 1e-3
    ax.set(title=f"{label}\n정확히 0: {int((values == 0).sum()):,} / {values.size:,}개",
           xlabel="log10 |w| (0이 아닌 가중치)")
axes[1].set_ylabel("개수 (로그 눈금)")
plt.show()
acc.update({f"l1={ALPHA}": accuracy(l1), f"l1={ALPHA}:prox": accuracy(l1_prox)})
for label, run in [("none", base), (f"l1={ALPHA}", l1), (f"l1={ALPHA}:prox", l1_prox)]:
    stats = weight_stats(run.model)
    print(f"{label:14} |w| < 1e-3: {stats['frac_small']:6.1%}   정확히 0: {stats['frac_zero']:6.1%}   "
          f"테스트 정확도 {acc[label]['test']:.3f}")

# %% [markdown]
# ## 4. 잡음 주입
#
# `noise=σ`는 학습할 때에만 입력 픽셀마다 가우스 잡음 N(0, σ²)을 더한다. 그래서 신경망은 똑같은 이미지를 두 번 보는
# 일이 없고, 평가할 때에는 깨끗한 이미지를 받는다. 아래에서는 기준 모델의 학습된 가중치를 `noise=0.3`으로 만든 모델에
# 옮겨 싣는다. 이 모델의 첫 층이 바로 잡음 층이다. 학습 모드에서는 같은 이미지를 두 번 통과시켜도 출력이 달라야 하고,
# 평가 모드에서는 잡음이 꺼지므로 두 출력이 정확히 같아야 한다(차이 0).

# %%
noisy = build_model("ref-cnn", DATA.input_shape, DATA.num_classes, parse_specs(["noise=0.3"]))
noisy.load_state_dict(base.model.state_dict())  # 잡음 층에는 파라미터가 없으므로 이름이 그대로 맞는다
image = X_TEST[:1]
torch.manual_seed(0)
with torch.no_grad():
    seen = [image] + [noisy.gaussian_noise.train()(image) for _ in range(3)]
fig, axes = plt.subplots(1, 4, figsize=(8, 2.2))
titles = ["깨끗한 입력 (평가)", "학습 중 1회차", "학습 중 2회차", "학습 중 3회차"]
for ax, img, title in zip(axes, seen, titles, strict=True):
    ax.imshow(img[0, 0], cmap="gray_r")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.suptitle("noise=0.3일 때 신경망이 보는 입력")
plt.show()

with torch.no_grad():
    for mode in ("학습", "평가"):
        noisy.train(mode == "학습")
        first, second = noisy(image).softmax(1), noisy(image).softmax(1)
        print(f"{mode} 모드: 두 번 통과시킨 클래스 확률의 최대 |차이| "
              f"{(first - second).abs().max().item():.4f}")
noise_run = train("noise=0.3")  # 6절 뒤의 비교를 위해 잡음 주입으로 학습한 모델도 하나

# %% [markdown]
# ## 5. 드롭아웃
#
# 드롭아웃은 학습 단계마다 은닉 유닛의 일부를 무작위로 끈다. 어떤 유닛도 특정한 다른 유닛에 기댈 수 없고, 같은
# 예제라도 돌아올 때마다 다른 유닛 묶음이 맡게 되므로 문제를 통째로 외워 버리기가 어려워진다. 그 대가로 학습은
# 느려진다. 강의는 유닛의 60%를 남기는데(유지 비율 0.6), 이것은 드롭 비율 0.4와 같다. `keep=0.6`과 `dropout=0.4`는
# 같은 설정이다. 남은 유닛은 1/(1 − 0.4) ≈ 1.67배로 키워 기댓값을 맞추고, 평가 때에는 모든 유닛이 돌아오며 아무것도
# 키우지 않는다. 드롭아웃은 계산량을 줄여 주지 않는다. 모든 유닛을 계산한 다음 일부를 0으로 만들 뿐이다.
#
# 마스크 그림은 샘플 하나가 12번의 학습 단계마다 은닉 유닛 128개 가운데 어느 것을 남기는지 보여 준다(검은 칸: 남김).
# 그 아래 출력에서는 약 40%가 0이어야 하고, 남은 값은 모두 1/(1 − 0.4)여야 하며, 평가 모드는 입력을 그대로 돌려주어야
# 한다.

# %%
print("keep=0.6의 해석:", parse_spec("keep=0.6"), "| dropout=0.4와 같은 설정인가:",
      parse_spec("keep=0.6") == parse_spec("dropout=0.4"))
drop = train("keep=0.6")
acc["keep=0.6"] = accuracy(drop)
masks = analysis.dropout_masks(drop.model, steps=12, seed=0)  # (단계, 유닛), True = 남김

layer = copy.deepcopy(drop.model.dropout)
ones = torch.ones(1000, 128)
torch.manual_seed(0)
out = layer.train()(ones)
kept = ", ".join(f"{v:.4f}" for v in out[out != 0].unique().tolist())
print(f"학습 모드: 0의 비율 {(out == 0).float().mean().item():.1%}, 남은 값 {kept}, 평균 {out.mean().item():.3f}"
      f"  (1/(1 - 0.4) = {1 / 0.6:.4f})")
print(f"평가 모드: 출력이 입력과 같은가: {torch.equal(layer.eval()(ones), ones)}")

left_on = analysis.dropout_left_on(drop.model, X_TEST[:300], Y_TEST[:300], passes=3, seed=0)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 2.8), gridspec_kw={"width_ratios": [3, 1]})
left.imshow(masks, cmap="Greys", aspect="auto", interpolation="nearest")
left.set(xlabel="은닉 유닛", ylabel="학습 단계",
         title=f"유지 비율 0.6의 드롭아웃 마스크 (남은 비율 {masks.mean():.0%})")
left.grid(False)
right.bar(["평가"] + [f"켬 {i + 1}" for i in range(left_on["passes"])], [left_on["eval_acc"], *left_on["on_accs"]],
          color=["C0"] + ["C3"] * left_on["passes"])
right.set(ylabel="테스트 정확도", title="테스트 때 드롭아웃을 켜 두면", ylim=(0, 1))
plt.show()
print(f"드롭아웃을 켠 채 통과할 때마다 바뀌는 예측: {left_on['disagreement']:.1%}; "
      f"평가 모드로 두 번 통과할 때: {left_on['eval_disagreement']:.1%}")
for label in ("none", "keep=0.6"):
    print(f"{label:9} 정확도: 학습 {acc[label]['train']:.3f}, 테스트 {acc[label]['test']:.3f}")

# %% [markdown]
# 드롭아웃이 학습 때에만 쓰여야 한다면 오른쪽 막대가 그것을 보여 줄 것이다. 테스트 때 켜 두면 통과할 때마다 예측이
# 조금씩 달라지고, 대개 평가 모드의 모델보다 정확도가 떨어진다.

# %% [markdown]
# ## 6. 배치 정규화
#
# 배치 정규화는 지금 들어온 미니배치 안에서 특징마다 값을 표준화한다. 배치 평균을 빼고 배치 표준편차로 나누므로, 앞
# 층이 무엇을 내놓든 각 특징(합성곱이라면 채널 하나하나)은 평균 0, 표준편차 1로 들어온다. 그다음 학습되는 크기 요소
# γ와 이동 요소 β가 각 특징을 쓸모 있는 자리로 옮긴다. sandbag은 BN을 각 합성곱층과 완전연결층 바로 뒤, 활성화 함수
# 앞에 둔다. 평가 모드에서는 지금 배치의 통계 대신, 학습하는 동안 모아 둔 배치 통계의 이동 평균(running statistics)을
# 쓴다.
#
# 아래에서는 forward hook으로 학습 모드에서 64장짜리 배치가 지나갈 때 첫 BN 층의 입력과 출력을 기록한다. BN 앞에서는
# 채널마다 평균과 퍼짐이 제각각이어야 하고, 정규화 뒤(γ와 β를 적용하기 전)에는 채널마다 평균이 0에, 표준편차가 1에
# 가까워야 한다.

# %%
bn = train("bn")
first_bn = bn.model.batch_normalization
probe = copy.deepcopy(bn.model).train()
captured = {}
hook = probe.batch_normalization.register_forward_hook(
    lambda module, inputs, output: captured.update(x=inputs[0].detach(), y=output.detach()))
with torch.no_grad():
    probe(X_TEST[:64])
hook.remove()


def per_channel(t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """배치와 이미지 위치 전체에 걸친 채널별 평균과 (편향된) 표준편차."""
    flat = t.transpose(0, 1).reshape(t.shape[1], -1).double()  # (채널, 배치 * 높이 * 너비)
    return flat.mean(1).numpy(), flat.std(1, correction=0).numpy()


gamma, beta = first_bn.weight.detach().view(1, -1, 1, 1), first_bn.bias.detach().view(1, -1, 1, 1)
z = (captured["y"] - beta) / gamma  # 학습된 크기 요소와 이동 요소를 적용하기 전의 BN 출력
(mean_in, std_in), (mean_z, std_z) = per_channel(captured["x"]), per_channel(z)
channel = int(np.abs(mean_in).argmax())

fig, axes = plt.subplots(1, 3, figsize=(13, 3))
axes[0].hist(captured["x"][:, channel].flatten().numpy(), bins=50, alpha=0.6, log=True, label="BN 앞")
axes[0].hist(z[:, channel].flatten().numpy(), bins=50, alpha=0.6, log=True, label="정규화 뒤")
axes[0].set(title=f"배치 하나에서 채널 {channel}의 값", xlabel="값")
axes[0].legend(fontsize=8)
for ax, before, after, title in [(axes[1], mean_in, mean_z, "채널별 평균"),
                                 (axes[2], std_in, std_z, "채널별 표준편차")]:
    ax.plot(before, "o", ms=4, label="BN 앞")
    ax.plot(after, "o", ms=4, label="정규화 뒤")
    ax.set(title=title, xlabel="채널")
axes[2].legend(fontsize=8)
plt.show()
print(f"정규화 뒤: 최대 |평균| {np.abs(mean_z).max():.1e}, 표준편차 {std_z.min():.4f} ~ {std_z.max():.4f}")
for name, m in bn.model.named_children():
    if "batch_normalization" in name:
        print(f"{name:22} 학습된 크기 요소 γ 범위 [{m.weight.min().item():.3f}, {m.weight.max().item():.3f}], "
              f"이동 요소 β 범위 [{m.bias.min().item():.3f}, {m.bias.max().item():.3f}]")

# %% [markdown]
# γ와 β는 1과 0에서 출발한다. 이미지 300장으로 20 에포크를 돈 뒤에도 조금밖에 움직이지 않았을 수도 있다.
#
# 학습 모드에서는 통계를 배치에서 구하므로, 이미지 하나의 출력이 같은 배치에 어떤 이미지들이 함께 들었는지에 따라
# 달라진다. 배치 통계가 단계마다 새로 주입되는 잡음처럼 작용해서, 드롭아웃처럼 학습을 일부러 흔드는 셈이다. 배치가
# 작을수록 통계가 들쭉날쭉해지므로, 아주 작은 미니배치에서는 BN이 주는 흔들림이 지나치게 커진다. 평가 모드는 그 대신
# 이동 평균 통계를 쓰므로 함께 든 이미지가 전혀 영향을 주지 않아야 하고, 층의 출력은 정확히
# (x − 이동 평균) / √(이동 분산 + ε) · γ + β여야 한다.
#
# 먼저 테스트 이미지 하나를 서로 다른 8장짜리 배치 두 개에 넣어 보고, 이어서 여러 배치 크기에 대해 이미지 8장의 예측
# 확률이 무작위 배치 4개 사이에서 얼마나 퍼지는지 본다. 배치가 커질수록 퍼짐은 줄어야 하고, 평가 모드에서는 0이어야
# 한다.

# %%
gen = torch.Generator().manual_seed(0)
batches = [torch.cat([X_TEST[:1], X_TEST[1 + torch.randperm(len(X_TEST) - 1, generator=gen)[:7]]]) for _ in range(2)]
probe = copy.deepcopy(bn.model)
with torch.no_grad():
    for mode in ("학습", "평가"):
        probe.train(mode == "학습")
        first, second = (probe(b)[0].softmax(0) for b in batches)
        print(f"{mode} 모드: 서로 다른 두 배치에서 이미지 하나의 클래스 확률 최대 |차이| "
              f"{(first - second).abs().max().item():.4f}")
    layer = copy.deepcopy(first_bn).eval()
    by_hand = ((captured["x"] - layer.running_mean.view(1, -1, 1, 1))
               / torch.sqrt(layer.running_var.view(1, -1, 1, 1) + layer.eps) * gamma + beta)
    print(f"평가 모드의 출력과 이동 평균 통계로 계산한 식의 최대 |차이| "
          f"{(layer(captured['x']) - by_hand).abs().max().item():.1e}")

sizes = [2, 8, 32]
spread = [analysis.bn_companion_noise(bn.model, X_TEST, n_samples=8, n_batches=4, batch_size=b, seed=0) for b in sizes]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(sizes, [s["prob_std_mean"] for s in spread], "o-", label="학습 모드 (배치 통계)")
ax.plot(sizes, [s["eval_prob_std_mean"] for s in spread], "s--", label="평가 모드 (이동 평균 통계)")
ax.set_xscale("log", base=2)
ax.set_xticks(sizes, [str(b) for b in sizes])
ax.set(xlabel="배치 크기", ylabel="확률의 퍼짐", title="같은 이미지, 다른 배치 동료")
ax.legend()
plt.show()

# %% [markdown]
# ## 기법별로 어디쯤 섰는가
#
# 각 절은 같은 학습 이미지 300장으로, 같은 20 에포크 동안, 시드 하나로 모델을 한 개씩 학습했다. 여기서 나란히 놓고
# 평가 모드 학습 정확도, 테스트 정확도, 그리고 기법 없음과의 테스트 정확도 차이(%p)를 본다. 이 조건에서는 정규화하지
# 않은 신경망이 학습 이미지에 거의 완벽히 맞고 테스트는 그보다 한참 낮으므로, 기법이 메울 격차가 있다. 에포크를 두어
# 번만 돌리면 신경망이 아직 덜 학습된 상태라 모든 기법이 테스트 정확도를 낮춘다. 여기서는 배치 정규화, 드롭아웃, 잡음
# 주입이 기법 없음보다 위에 와야 한다. 가중치 벌점 L2와 L1은 Adam에서 어느 크기에서든 테스트 정확도를 1%p도 안 되게
# 이리저리 움직일 뿐이다(README, "The regime map"). 시드 하나는 한 번의 추첨일 뿐이다. 7절의 연구가 이 비교를 여러
# 시드로 되풀이해 어느 차이가 확실한지 말해 준다.

# %%
acc["noise=0.3"] = accuracy(noise_run)
acc["bn"] = accuracy(bn)
labels = [label for label in acc if label != "none"]
for label in labels:
    delta = 100 * (acc[label]["test"] - acc["none"]["test"])
    word = "높였다" if delta > 0 else "낮췄다" if delta < 0 else "바꾸지 않았다"
    print(f"{label:14} 학습 {acc[label]['train']:.3f}  테스트 {acc[label]['test']:.3f}  "
          f"기법 없음보다 테스트 정확도를 {abs(delta):.1f}%p {word}")
fig, ax = plt.subplots(figsize=(8, 3))
names = ["none", *labels]
ax.bar(np.arange(len(names)) - 0.2, [acc[n]["train"] for n in names], 0.4, label="학습 (평가 모드)")
ax.bar(np.arange(len(names)) + 0.2, [acc[n]["test"] for n in names], 0.4, label="테스트")
ax.set_xticks(np.arange(len(names)), names, rotation=20)
ax.set(ylim=(0.5, 1.0), ylabel="정확도", title="시드 하나, 이미지 300장, 20 에포크")
ax.legend()
plt.show()

# %% [markdown]
# ## 7. 작은 연구: 어떤 주장이 맞는가?
#
# `sandbag study`는 기준 CNN을 기법마다 여러 시드로 학습하고, 주장 하나하나를 시드끼리 짝지은 비교로 바꾸어 판정을
# 내린다: *지지됨*, *반박됨*, *차이 미미*(실질적인 차이 없음), *판단 보류*. 아래 연구는 금방 끝나도록 일부러 아주
# 작게 잡았다(학습 이미지 300장으로 에포크 3번, 시드 2개, 시간 측정 단계 없음). 시드 두 개로는 신뢰구간이 넓어서
# 판정은 대부분 판단 보류로 나올 것이고, 시간에 관한 주장(7번, 12번)은 시간 측정 단계 없이는 판정할 수 없다. 4번
# 주장은 실험이 아니라 계산이므로 여기서도 판정이 날 수 있다. 이렇게 짧게 학습하면 정확도는 거칠게만 나오고, 특히
# BN은 나빠 보일 수 있다. 평가에 쓰이는 이동 평균 통계가 빠르게 바뀌는 가중치를 미처 따라잡지 못했을 수 있다. 의미 있는
# 판정을 보려면 `sandbag study`를 실행하자(표준 프리셋, 코어 두 개에서 14분 남짓). 이 셀을 다시 실행하면 이미 끝난
# 학습은 다시 쓰인다. 보고서는 한국어로(`lang="ko"`) 만들고, 주장 문장도 한국어로 보여 준다.

# %%
study = StudyConfig.from_dict({
    "name": "notebook", "quick": True, "data": ["mnist-5k"], "train_size": 300, "epochs": 3, "eval_every": 3,
    "batch_size": 32, "seeds": 2, "extra_seeds": 2, "val_fraction": 0.2, "sweep_epochs": 2, "batch_sizes": [8, 32],
    "learn_target": 0.5, "timing_repeats": 0,
    "sweep": {"l2": [1e-3], "l1": [1e-4], "noise": [0.3], "dropout": [0.4]},
    "textbook": {"l2": 1e-3, "l1": 1e-4, "noise": 0.3, "dropout": 0.4},
})
STUDY_DIR = Path("notebook-study")
LANG = "ko"  # 보고서 언어: en 또는 ko
rows = run_study(study, STUDY_DIR, workers=2, threads=1, command="the regularization notebook")
build_report(STUDY_DIR, lang=LANG)  # verdicts.json, 그림, report.md / report.html을 쓴다
print(f"학습 {len(rows)}회; 보고서: {STUDY_DIR / 'report.html'}")

WORDS = {"supported": "**지지됨**", "contradicted": "**반박됨**", "negligible": "**차이 미미**",
         "mixed": "엇갈림", "inconclusive": "판단 보류"}  # 굵은 글씨: 판정이 난 것
verdicts, _, _ = localized_verdicts(STUDY_DIR, LANG)  # 주장 문장도 보고서 언어로
table = ["| # | 주장 | 판정 |", "|---|---|---|"]
for v in verdicts:
    verdict = v["data"][study.data[0]]["verdict"]
    table.append(f"| {v['number']} | {v['text']} | {WORDS.get(verdict, verdict)} |")
display(Markdown("\n".join(table)))

headline = [r for r in read_results(STUDY_DIR) if r["group"] == "headline"]
arms = [a["arm"] for a in planned_arms(study) if a["group"] == "headline"]  # none 다음에 기법들
fig, ax = plt.subplots(figsize=(7, 3))
for i, arm in enumerate(arms):
    accs = [r["test_acc"] for r in headline if r["arm"] == arm]
    ax.bar(i, np.mean(accs), color="C0", alpha=0.5)
    ax.plot([i] * len(accs), accs, "ko", ms=4)
ax.set_xticks(range(len(arms)), arms)
ax.set(ylabel="테스트 정확도", title="연구의 주요 비교 (막대: 평균, 점: 시드별 값)")
plt.show()

# %% [markdown]
# ## 8. 나만의 질문: 여기서는 드롭아웃 0.5가 0.3보다 나은가?
#
# 강의의 주장은 시작일 뿐이다. `sandbag compare A B`로 자기 질문을 던질 수 있다. 두 설정을 같은 시드로 학습하고
# (그래서 시드마다 두 학습이 초기화와 배치 순서를 공유한다), A와 B에 대한 세 주장을 판정한다: 테스트 정확도가 더
# 높은가, 격차가 더 좁은가, 목표 학습 정확도에 더 적은 에포크로 이르는가. 판정마다 평균 차이와 95% 신뢰구간이
# 붙고, 판단 보류라면 시드가 몇 개 있어야 결론이 날지도 알려 준다. 터미널에서는 다음과 같다.
#
#     sandbag compare "dropout=0.5" "dropout=0.3" --seeds 3 --epochs 5 --train-size 300 --test default
#
# 아래는 같은 연구를 노트북에 맞게 작게 잡아 Python API로 실행한 것이다. 시드 세 개는 적으니 구간이 넓게 나올
# 것이다. `[[arms]]`와 `[[claims]]` 표를 담은 연구 파일이면 이런 종류의 질문을 무엇이든 던질 수 있다(README의
# "Ask your own question").

# %%
question = compare_config("dropout=0.5", "dropout=0.3", seeds=3, epochs=5, train_size=300, test="default")
QUESTION_DIR = Path("notebook-compare")
run_study(question, QUESTION_DIR, workers=2, threads=1, command="the regularization notebook, section 8")
build_report(QUESTION_DIR, lang=LANG)
answers, _, _ = localized_verdicts(QUESTION_DIR, LANG)
for v in answers:
    part = v["data"][question.data[0]]["parts"][0]
    print(f"{v['text']}\n  평균 {part['mean']:+.4f}, 95% 신뢰구간 [{part['ci_low']:+.4f}, {part['ci_high']:+.4f}] "
          f"(시드 {part['n']}개): {part['verdict']}")

diffs = answers[0]["data"][question.data[0]]["parts"][0]["diffs"]  # 시드마다: A의 테스트 정확도 − B의 것
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.axhline(0, color="0.5", lw=1)
ax.plot([int(s) for s in diffs], list(diffs.values()), "o", color="C1")
ax.set(xlabel="시드", ylabel="테스트 정확도: 0.5 − 0.3", title="시드마다 짝지은 차이 하나")
plt.show()
