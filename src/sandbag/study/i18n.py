"""The report's languages: English (the templates themselves) and Korean (this catalog).

The claims carry their own Korean beside their English (``text_ko``, ``label_ko`` in lecture.toml or a study file,
under the claim's id). Every other sentence, heading, label and verdict word that the report and its figures show
goes through `translator(lang)`: the English template is the key, ``{name}`` fields are filled in after the lookup,
so a Korean sentence may put them in its own order. A template missing from the catalog falls back to English and
is recorded in `MISSING` (tests build a Korean report and require it to stay empty). Terms follow the lecture the
project grew from (정규화, 과대적합, 드롭아웃, 배치 정규화, 잡음 주입); the sentences are our own.
"""

from __future__ import annotations

import re
from collections.abc import Callable

LANGS = ("en", "ko")
MISSING: set[str] = set()

# How the timing phase measures (sandbag.study.timing writes it into timing.json; the report words it).
TIMING_METHOD_V1 = ("seconds per epoch per arm and repetition, timed alone after all runs finished (nothing else of "
                    "the "
                 "study running): the median of at least two epochs filling {min_seconds:g} s, after {warmup} warm-up "
                 "steps, {threads} thread(s) as the runs had; arms interleaved with their order rotated each "
                 "repetition; repetition r pairs with seed r")
TIMING_METHOD_V2 = ("thread CPU seconds per epoch (wall seconds kept beside them) per arm and repetition, timed "
                    "alone after all runs finished: the arms alternated epoch by epoch in one process, their order "
                    "rotated each repetition, until each had at least two epochs filling {min_seconds:g} s; the "
                    "median per arm, after {warmup} warm-up steps, {threads} thread(s) as the runs had (wall seconds "
                    "on a GPU); repetition r pairs with seed r")
TIMING_METHOD_V3 = ("thread CPU seconds per epoch (wall seconds kept beside them) per arm and repetition, timed alone "
                 "after all runs finished: the arms alternated epoch by epoch in one process (a round: one epoch of "
                 "each), their order rotated each repetition, until each had at least two epochs filling "
                 "{min_seconds:g} s, after {warmup} warm-up steps, {threads} thread(s) as the runs had (wall seconds "
                 "on a GPU). A timing comparison takes, per repetition, the median over rounds of one arm's epoch "
                 "against the other's in the same round, so the machine's drift between rounds cancels; the tables "
                 "show each arm's median; repetition r pairs with seed r")
TIMING_METHOD = ("thread CPU seconds per epoch (wall seconds kept beside them) per arm and repetition, timed alone "
                 "after all runs finished, in rounds in one process: arms a comparison sets at the same batch size "
                 "take turns every {steps} training steps (a chunk of an epoch, timed and scaled to an epoch), arms "
                 "at different batch sizes epoch by epoch; the order reversed every other round and rotated each "
                 "repetition, until each arm had two epochs' worth filling {min_seconds:g} s, after {warmup} "
                 "warm-up steps, {threads} thread(s) as the runs had (wall seconds on a GPU). A timing comparison "
                 "takes, per repetition, the median over rounds of one arm's time against the other's in the same "
                 "round, so the machine's drift cancels; the tables show each arm's median; repetition r pairs with "
                 "seed r")

KO: dict[str, str] = {
    # --- verdict words
    "SUPPORTED": "지지됨",
    "CONTRADICTED": "반박됨",
    "NEGLIGIBLE": "차이 미미",
    "inconclusive": "판단 보류",
    "NOT TESTABLE": "검정 불가",
    "every run at {bound}": "모든 학습이 {bound}",
    "both arms' means within {room} of {bound}": "두 조건의 평균이 모두 {bound}에서 {room} 이내",
    "{data}: not testable, so neither decided nor counted ({n} parts; the metric sits at its bound in both arms, or "
    "each arm's mean within the smallest effect of interest of it, so no difference that matters can show): "
    "{labels}.":
        "{data}: 검정 불가라서 결론에도 집계에도 넣지 않은 부분 {n}개 (두 조건 모두 지표가 한계값에 있거나 "
        "조건별 평균이 한계값에서 최소 관심 효과 이내라서, 의미 있는 차이가 나타날 여지가 없습니다): {labels}.",
    "mixed": "엇갈림",
    "{mark} (decided)": "{mark} (결론남)",
    # --- report: header and protocol
    "sandbag study: {name}": "sandbag 실험: {name}",
    "**Quick preset: a reduced study (fewer seeds, epochs and samples). Treat its verdicts as a smoke test, not as "
    "evidence.**": "**quick 프리셋: 시드·에포크·샘플을 줄인 실험입니다. 판정은 동작 확인용일 뿐 근거로 삼지 마세요.**",
    "{n_runs} runs on {data}; {seeds} seeds for the headline comparison, {extra_seeds} for the sub-experiments. "
    "Wall time {wall}, compute in runs {compute}.":
        "{data}에서 {n_runs}회 학습: 주 비교에 시드 {seeds}개, 보조 실험에 {extra_seeds}개. 경과 시간 {wall}, "
        "학습에 쓴 계산 시간 {compute}.",
    "Command: `{command}`": "명령: `{command}`",
    "{minutes} min": "{minutes}분",
    "{seconds} s": "{seconds}초",
    "Versions: sandbag {sandbag}, torch {torch}, Python {python}. Hardware: {processor}, {cpus} CPUs, {workers} "
    "workers x {threads} threads.":
        "버전: sandbag {sandbag}, torch {torch}, Python {python}. 하드웨어: {processor}, CPU {cpus}개, 작업자 "
        "{workers}개 x 스레드 {threads}개.",
    "Protocol": "실험 방법",
    "all": "전체",
    "Model {model}; optimizer {optimizer} (lr {lr}); {epochs} epochs at batch {batch_size}; training set {train} "
    "samples (stratified, seeded); test set: {test}.":
        "모델 {model}; 옵티마이저 {optimizer} (학습률 {lr}); 배치 {batch_size}로 {epochs} 에포크; 학습 데이터 "
        "{train}개 (층화, 시드 고정); 테스트 데이터: {test}.",
    "Strength is a nuisance parameter: each technique's strength is chosen by validation accuracy on {validation} "
    "({sweep_epochs} epochs, {sweep_seeds} seed(s) per strength, the mean decides), never on the test set. The "
    "chosen value then runs on {seeds} seeds.":
        "강도는 관심 대상이 아닌 조정값입니다: 각 기법의 강도는 {validation}에서의 검증 정확도로 고르며 "
        "({sweep_epochs} 에포크, 강도마다 시드 {sweep_seeds}개의 평균), 테스트 데이터는 쓰지 않습니다. 고른 값으로 "
        "시드 {seeds}개를 학습합니다.",
    "{n} of those runs (the arm without a technique and each chosen strength, on the sweep's seeds) are the "
    "sweep's own runs, with the same data, seed and epochs, trained once: their strength was chosen on validation "
    "images, their comparison is on the test set.":
        "그중 {n}개 실행(기법 없음과 고른 강도마다, 조정에 쓴 시드)은 데이터·시드·에포크가 같은 조정 실행 그 자체로, "
        "한 번만 학습했습니다: 강도는 검증 이미지로 골랐고 비교는 테스트 데이터로 합니다.",
    "Verdict rule: paired difference over seeds (same seeds for both arms), mean with a 95% Student-t interval. "
    "Supported if the interval lies on the claimed side of zero (or above -margin for 'at least as good'), "
    "contradicted if on the other side, negligible (no practical difference) if neither and the interval lies "
    "inside ± the smallest effect of interest, inconclusive otherwise. A claim is decided when every part is "
    "supported, contradicted or negligible; its verdict is their common one, or mixed.":
        "판정 규칙: 같은 시드끼리 짝지은 차이의 평균과 95% Student-t 신뢰구간. 구간이 주장한 쪽에 있으면(‘못지않다’는 "
        "−허용폭 위에 있으면) 지지됨, 반대쪽에 있으면 반박됨, 둘 다 아니면서 구간이 ± 최소 관심 효과 안에 있으면 "
        "차이 미미(실질적 차이 없음), 그 밖에는 판단 보류입니다. 모든 부분이 지지됨·반박됨·차이 미미 중 하나이면 "
        "주장에 결론이 난 것이며, 판정은 그 공통 판정이거나 엇갈림입니다.",
    "Smallest effects of interest: {effects}.": "최소 관심 효과: {effects}.",
    "none named": "지정 없음",
    "Multiple comparisons: beside each verdict, its p-value (of the test behind it: zero difference, the margin, or "
    "both equivalence bounds; p < 0.05 exactly when the interval decides) adjusted by Holm's method over every "
    "paired part of every claim of the data set (family-wise error 5%); the parts that read machine timings are "
    "adjusted as a family of their own, so the other verdicts do not depend on the machine's speed.":
        "다중 비교: 판정마다 그 검정(차이 0, 허용폭, 또는 두 동등성 경계; 구간이 결론을 낼 때 정확히 p < 0.05)의 "
        "p값을 데이터셋의 모든 짝지은 부분에 대해 Holm 방법으로 보정합니다(전체 제1종 오류율(FWER) 5%). 기계 시간을 "
        "읽는 부분은 따로 한 묶음으로 보정하므로 다른 판정은 기계 속도에 좌우되지 않습니다.",
    "Power: for each inconclusive part, the smallest difference this many seeds detect with 80% power (from the "
    "observed paired spread), and the seeds that would decide the part with 80% probability were the observed "
    "difference and spread the truth: by detecting the difference, or by showing it negligible where the part has "
    "a smallest effect of interest.":
        "검정력: 판단 보류인 부분마다, 이 시드 수로 80% 검정력으로 찾아낼 수 있는 가장 작은 차이(관측된 짝 차이의 "
        "퍼짐으로 계산)와, 관측된 차이와 퍼짐이 참값이라면 80% 확률로 결론을 낼 시드 수: 차이를 찾아내거나, 최소 관심 "
        "효과가 있는 부분에서는 차이가 미미함을 보여서.",
    "Gap = clean (evaluation-mode) training accuracy minus test accuracy. Learning speed = fractional epoch at which "
    "clean training accuracy reaches {target} (epochs + 1 if never), {how}":
        "격차 = 평가 모드 학습 정확도 − 테스트 정확도. 학습 속도 = 평가 모드 학습 정확도가 {target}에 이르는 (소수) "
        "에포크(끝내 못 이르면 에포크 수 + 1), {how}",
    "measured every epoch on a fixed stratified subset of {n} training images, in the runs whose learning speed "
    "is read (the headline arms, the sweep, and arms a claim reads it of; the others have none).":
        "학습 이미지 중 고정된 층화 부분집합 {n}개로 매 에포크 측정하며, 학습 속도를 읽는 실행(헤드라인 기법, 강도 "
        "조정, 그리고 주장이 학습 속도를 읽는 기법)에서만 잽니다(나머지는 없음).",
    "interpolated between the evaluated epochs.": "평가한 에포크 사이를 보간.",
    " Clean figures every {k} epochs and at the last.": " 평가 모드 지표는 {k} 에포크마다와 마지막 에포크에 계산.",
    "Timing claims (seconds per epoch): {method}.": "시간 관련 주장(에포크당 초): {method}.",
    TIMING_METHOD:
        "조건과 반복마다 에포크당 스레드 CPU 초(벽시계 초도 함께 기록)를, 모든 학습이 끝난 뒤 한 프로세스 안에서 "
        "라운드로 따로 잰 값: 비교가 같은 배치 크기에서 견주는 조건은 학습 {steps}단계마다(에포크의 한 조각을 재어 "
        "에포크로 환산), 배치 크기가 다른 조건은 에포크마다 차례로 돌고, 라운드마다 순서를 뒤집고 반복마다 순서를 "
        "돌리며, 조건마다 {min_seconds:g}초를 채우는 두 에포크 분량이 될 때까지, 워밍업 {warmup}단계 뒤, 학습 때와 "
        "같은 스레드 {threads}개로 잼(GPU에서는 벽시계 초). 시간 비교는 반복마다 같은 라운드 안에서 한 조건의 시간을 "
        "다른 조건의 시간과 견준 값의 라운드별 중앙값을 쓰므로 기계 속도의 변동은 상쇄됨; 표에는 조건별 중앙값을 "
        "보임; 반복 r은 시드 r과 짝지음",
    TIMING_METHOD_V3:
        "조건과 반복마다 에포크당 스레드 CPU 초(벽시계 초도 함께 기록)를, 모든 학습이 끝난 뒤 따로 잰 값: 한 프로세스 "
        "안에서 조건을 에포크마다 번갈아 돌리고(한 라운드: 조건마다 한 에포크) 반복마다 순서를 바꾸며, 조건마다 "
        "{min_seconds:g}초를 채우는 두 에포크 이상이 될 때까지, 워밍업 {warmup}단계 뒤, 학습 때와 같은 스레드 "
        "{threads}개로 잼(GPU에서는 벽시계 초). 시간 비교는 반복마다 같은 라운드 안에서 한 조건의 에포크를 다른 "
        "조건의 에포크와 견준 값의 라운드별 중앙값을 쓰므로, 라운드 사이 기계 속도의 변동은 상쇄됨; 표에는 조건별 "
        "중앙값을 보임; 반복 r은 시드 r과 짝지음",
    TIMING_METHOD_V2:
        "조건과 반복마다 에포크당 스레드 CPU 초(벽시계 초도 함께 기록)를, 모든 학습이 끝난 뒤 따로 잰 값: 한 프로세스 "
        "안에서 조건을 에포크마다 번갈아 돌리고 반복마다 순서를 바꾸며, 조건마다 {min_seconds:g}초를 채우는 두 에포크 "
        "이상이 될 때까지 잰 뒤의 중앙값, 워밍업 {warmup}단계 뒤, 학습 때와 같은 스레드 {threads}개"
        "(GPU에서는 벽시계 초); 반복 r은 시드 r과 짝지음",
    TIMING_METHOD_V1:
        "조건과 반복마다 에포크당 초를, 모든 학습이 끝난 뒤 실험의 다른 일이 돌지 않을 때 따로 잰 값: 워밍업 "
        "{warmup}단계 뒤, {min_seconds:g}초 이상을 채우는 두 에포크 이상의 중앙값, 학습 때와 같은 스레드 {threads}개; "
        "조건은 번갈아 재며 반복마다 순서를 돌리고, 반복 r은 시드 r과 짝지음",
    "Timing claims (seconds per epoch): from the runs themselves, which ran in parallel workers and shared the "
    "machine (this study has no timing phase).":
        "시간 관련 주장(에포크당 초): 병렬 작업자로 기계를 나눠 쓴 학습 자체에서 잰 값(이 실험에는 시간 측정 "
        "단계가 없음).",
    "every image not used for training or validation": "학습과 검증에 쓰지 않은 모든 이미지",
    "the data set's own test split": "데이터셋 자체의 테스트 분할",
    "{n} stratified images not used for training": "학습에 쓰지 않은 층화 이미지 {n}개",
    ", held out of the test set": " (테스트 데이터와 겹치지 않음)",
    "a {fraction} stratified split carved from the training data": "학습 데이터에서 떼어 낸 {fraction} 층화 분할",
    # --- report: problems
    "**{n} run(s) failed and are left out; the claims that read their arms are inconclusive. Run the same command "
    "on this folder again to retry them:** {names}.":
        "**{n}회 학습이 실패해 뺐습니다. 그 팔을 읽는 주장은 판정 불가입니다. 같은 명령을 이 폴더에 다시 실행하면 "
        "다시 시도합니다:** {names}.",
    "Inconclusive ({label}): runs failed ({runs}).": "판정 불가({label}): 실패한 학습 ({runs}).",
    "**{n} run(s) did not finish (status diverged: NaN/inf loss) and are left out of every comparison:** {names}.":
        "**{n}회 학습이 끝나지 못했습니다(발산: 손실이 NaN/inf). 모든 비교에서 뺐습니다:** {names}.",
    "**{n} finished run(s) have no probes.json (measurements of the trained model); the claims that need them are "
    "inconclusive. Run the same `sandbag study` command on this folder again to probe them.**":
        "**끝난 학습 {n}회에 probes.json(학습된 모델의 측정값)이 없어 이를 쓰는 주장은 판단 보류입니다. 같은 "
        "`sandbag study` 명령을 이 폴더에 다시 실행하면 측정합니다.**",
    "**Model {model} regularizes on its own in every arm, the none arm too (the study allows it: "
    "model_own_regularization = \"allow\"): {layers}. No arm is unregularized; each technique is compared with the "
    "model as it comes.**":
        "**모델 {model}은 모든 조건에서, none 조건에서도 스스로 정규화합니다(실험 설정이 허용함: "
        "model_own_regularization = \"allow\"): {layers}. 정규화가 전혀 없는 조건은 없으며, 각 기법은 모델 "
        "그대로와 비교됩니다.**",
    "**{data}: every validation run of {techniques} diverged; the textbook strength was used instead.**":
        "**{data}: {techniques}의 검증 학습이 모두 발산해 교과서 강도를 대신 썼습니다.**",
    # --- report: chosen strengths
    "the weakest": "가장 약한 값",
    "the strongest": "가장 강한 값",
    " (val acc {acc})": " (검증 정확도 {acc})",
    " (not swept)": " (탐색 안 함)",
    "Chosen strengths ({data})": "고른 강도 ({data})",
    "Validation accuracy per strength: mean over {seeds} seed(s).": "강도별 검증 정확도: 시드 {seeds}개의 평균.",
    "Validation accuracy per strength: mean over {seeds} seed(s) ± one standard error.":
        "강도별 검증 정확도: 시드 {seeds}개의 평균 ± 표준오차 1배.",
    "technique": "기법",
    "chosen": "고른 값",
    "validation accuracy per strength": "강도별 검증 정확도",
    "textbook setting": "교과서 설정",
    "**At an edge of its grid: {edges}. A wider grid might choose another strength.**":
        "**탐색 범위의 끝에서 골랐습니다: {edges}. 범위를 넓히면 다른 강도가 뽑힐 수 있습니다.**",
    "validation curves ({data})": "검증 곡선 ({data})",
    # --- report: headline
    "Headline ({data}): mean ± std over seeds": "주 비교 ({data}): 시드에 대한 평균 ± 표준편차",
    "arm": "조건",
    "spec": "설정",
    "train acc": "학습 정확도",
    "test acc": "테스트 정확도",
    "gap": "격차",
    "weight L2": "가중치 L2",
    "frac |w|<1e-3": "|w|<1e-3 비율",
    "epochs to target": "목표까지 에포크",
    "s/epoch": "초/에포크",
    "headline ({data})": "주 비교 ({data})",
    # --- report: claims
    "Claims": "주장",
    "claim": "주장",
    "part": "부분",
    "mean difference": "평균 차이",
    "95% CI": "95% 신뢰구간",
    "smallest effect": "최소 관심 효과",
    "verdict": "판정",
    "p (Holm)": "p (Holm)",
    "survives Holm": "Holm 보정 후 유지",
    "yes": "예",
    "no": "아니오",
    "worst {worst} (tolerance {tolerance})": "최악 {worst} (허용치 {tolerance})",
    "(deterministic check)": "(결정적 검사)",
    "{figure} ({data})": "{figure} ({data})",
    "the observed difference ({observed})": "관측된 차이({observed})",
    "the observed distance from the margin ({observed})": "관측된 마진까지의 거리({observed})",
    "{n} seeds would detect {against}": "시드 {n}개면 {against}를 찾아낼 수 있음",
    "Of the {total} parts whose arms ran at the same chosen strengths in both studies, {same} reach the same verdict. "
    "The other {other} rest on strengths the two sweeps chose differently ({which}; here → there): each of them "
    "compares two settings, not one question asked twice.":
        "두 연구에서 같은 강도로 학습한 부분 {total}개 중 {same}개가 같은 판정에 이릅니다. 나머지 {other}개는 두 "
        "탐색이 서로 다르게 고른 강도에 기대므로({which}; 여기 → 저기), 같은 질문을 두 번 한 것이 아니라 두 설정을 "
        "비교한 것입니다.",
    "strengths, if they differ": "다른 경우의 강도",
    "{n} seeds would decide it, by detecting {against} or showing it negligible":
        "시드 {n}개면 결론을 낼 수 있음({against}를 찾아내거나 차이가 미미함을 보여서)",
    "no number of seeds detects a difference of 0": "차이가 0이면 시드를 늘려도 찾아낼 수 없음",
    "more than {n} seeds would be needed for {against}": "{against}에는 시드가 {n}개보다 많이 필요함",
    "pt": "%p",
    "epochs": "에포크",
    "s": "초",
    "Power ({label}): with n = {n} the smallest difference detected with 80% power is {detectable}; {more}.":
        "검정력 ({label}): n = {n}일 때 80% 검정력으로 찾아낼 수 있는 가장 작은 차이는 {detectable}; {more}.",
    "**{data}: {decided} of {total} claims decided** (every part supported, contradicted or negligible); {survive} "
    "of {paired} paired parts survive Holm's correction (family-wise 5%).":
        "**{data}: 주장 {total}개 중 {decided}개 결론남** (모든 부분이 지지됨·반박됨·차이 미미); 짝지은 부분 "
        "{paired}개 중 {survive}개가 Holm 보정(전체 제1종 오류율 5%) 후에도 유지됨.",
    "{data}: a larger study could still move claims {claims}; `sandbag study --seeds N --extra-seeds N` on the same "
    "folder reuses the runs done.":
        "{data}: 더 큰 실험이라면 주장 {claims}의 판정이 바뀔 수 있습니다. 같은 폴더에 `sandbag study --seeds N "
        "--extra-seeds N`을 실행하면 이미 끝난 학습은 재사용합니다.",
    " (≈{n} seeds)": " (시드 ≈{n}개)",
    "Verdicts that differ between data sets (a finding in itself): {which}.":
        "데이터셋마다 다른 판정(그 자체로 하나의 발견): {which}.",
    "none": "없음",
    "Files": "파일",
    "results.csv (one row per run), aggregate.csv (mean, std, n per arm), analysis.json (the probed values the "
    "claims read, from each run's probes.json), verdicts.json, figures/, runs/.":
        "results.csv(학습마다 한 줄), aggregate.csv(조건별 평균·표준편차·n), analysis.json(주장이 읽는 측정값, 각 "
        "학습의 probes.json에서), verdicts.json(영어), figures/, runs/.",
    "Built by `sandbag report --out` from the study folder `{study}`, which holds results.csv, aggregate.csv and "
    "runs/.": "`sandbag report --out`으로 실험 폴더 `{study}`에서 만든 보고서입니다. results.csv, aggregate.csv, "
              "runs/는 그 폴더에 있습니다.",
    " (exploratory)": " (탐색적)",
    "Design {now}; preregistered as {first} when the study first ran ({at}).":
        "설계 {now}; 실험을 처음 실행할 때({at}) {first}(으)로 사전 등록됨.",
    "**Claims {which} were added or changed after the study first ran: they are exploratory, adjusted for multiple "
    "comparisons in a family of their own, not with the preregistered claims.**":
        "**주장 {which}은(는) 실험을 처음 실행한 뒤에 추가되거나 바뀌었습니다: 탐색적 주장이므로 사전 등록된 주장과 "
        "따로, 그들끼리 다중 비교를 보정합니다.**",
    "Against another study": "다른 실험과 비교",
    "Where the spread comes from: not separable here. Both studies draw their samples alike; a study of the same "
    "design with the other data_sampling (fixed or per-seed) splits the spread over seeds into the training sample's "
    "share and the initialization's.":
        "퍼짐의 출처: 여기서는 나눌 수 없다. 두 실험이 표본을 같은 방식으로 뽑기 때문이다. 같은 설계에 data_sampling만 "
        "다른(fixed 또는 per-seed) 실험이 있으면 시드에 따른 퍼짐을 학습 표본의 몫과 초기화의 몫으로 나눈다.",
    "Where the spread comes from": "퍼짐의 출처",
    "Standard deviation over seeds with a sample per seed (sample and initialization) and with one fixed sample "
    "(initialization only); the training sample's share of the variance is their difference over the first.":
        "시드마다 표본을 뽑을 때(표본과 초기화)와 표본 하나로 고정할 때(초기화만)의 시드에 대한 표준편차; 학습 "
        "표본이 차지하는 분산의 몫은 두 분산의 차이를 앞의 분산으로 나눈 값이다.",
    "metric": "지표",
    "sd, sample per seed": "표준편차, 시드별 표본",
    "sd, fixed sample": "표준편차, 고정 표본",
    "sample's share": "표본의 몫",
    "Chosen by the one-standard-error rule: the weakest strength whose mean validation accuracy is within one "
    "standard error (over the best strength's seeds) of the best mean, so that strengths the sweep cannot tell apart "
    "resolve the same way each time; the verdicts below speak of the strength this rule chose.":
        "1-표준오차 규칙으로 골랐다: 검증 정확도 평균이 최고 평균에서 (최고 강도의 시드에 대한) 표준오차 1배 안에 "
        "드는 강도 중 가장 약한 것. 탐색으로 구별되지 않는 강도들이 매번 같은 쪽으로 정해지도록 하기 위함이며, 아래 "
        "판정은 이 규칙이 고른 강도에 대한 것이다.",
    "Chosen by the best mean validation accuracy; the verdicts below speak of that strength.":
        "검증 정확도 평균이 가장 높은 강도로 골랐다. 아래 판정은 그 강도에 대한 것이다.",
    "Grids extended beyond an edge where the rule's pick sat (one step at a time, up to {n} a side): {values}.":
        "규칙이 고른 강도가 끝에 있던 탐색 범위를 그 끝 너머로 넓혔다(한 번에 한 단계, 한쪽에 최대 {n}개): {values}.",
    "Chosen by the plateau-centre rule: of the strengths whose mean validation accuracy is within one standard "
    "error of a difference (the sweep's seeds paired) of the best mean, the middle one in order of strength (of two "
    "middle ones, {tie}), so that a flat stretch of the validation curve gives the same strength each time; the "
    "verdicts below speak of the strength this rule chose.":
        "평탄 구간 중앙 규칙으로 골랐다: 검증 정확도 평균이 최고 평균에서 (탐색 시드를 짝지은) 차이의 표준오차 1배 "
        "안에 드는 강도들 가운데 강도 순으로 가운데 것(가운데가 둘이면 {tie}). 검증 곡선의 평탄한 구간이 매번 같은 "
        "강도를 주도록 하기 위함이며, 아래 판정은 이 규칙이 고른 강도에 대한 것이다.",
    "the better mean": "평균이 높은 쪽",
    "the stronger: when the sweep cannot tell, regularize": "더 강한 쪽: 탐색이 가려내지 못하면 정규화한다",
    "P(A > B): the share of paired seeds in which A's value is above B's (a tie counts half), with its 95% Wilson "
    "interval.": "P(A > B): 짝지은 시드 중 A의 값이 B보다 큰 시드의 비율(같으면 절반으로 셈)과 95% Wilson 구간.",
    "Data sampling per seed: seed s draws its own stratified training sample (and its validation and test images); "
    "every arm of seed s gets the same ones, so each comparison stays paired. Replicate {replicate}, seeds {seeds}.":
        "시드별 데이터 표본: 시드 s마다 층화 학습 표본(과 검증·테스트 이미지)을 따로 뽑고, 시드 s의 모든 조건이 같은 "
        "표본을 쓰므로 비교는 계속 짝지어진다. 반복 실험 {replicate}, 시드 {seeds}.",
    "Data sampling fixed: every run trains on one stratified sample (data seed {data_seed}); the seeds vary the "
    "initialization and batch order only. Replicate {replicate}, seeds {seeds}.":
        "고정 데이터 표본: 모든 학습이 층화 표본 하나(데이터 시드 {data_seed})로 학습하며, 시드는 초기화와 배치 순서만 "
        "바꾼다. 반복 실험 {replicate}, 시드 {seeds}.",
    "Scope: each verdict holds over {n}-image training samples of {data} and initializations, at the strengths the "
    "validation sweep chose.":
        "범위: 각 판정은 {data}의 {n}장짜리 학습 표본들과 초기화들에 걸쳐, 검증 탐색이 고른 강도에서 성립한다.",
    "Scope: each verdict holds for one fixed {n}-image training sample of {data}, over initializations, at the "
    "strengths the validation sweep chose.":
        "범위: 각 판정은 {data}의 고정된 {n}장짜리 학습 표본 하나에 대해, 초기화들에 걸쳐, 검증 탐색이 고른 강도에서 "
        "성립한다.",
    "P(A > B) [95% CI]": "P(A > B) [95% 신뢰구간]",
    "**{same} of {total} parts reach the same verdict as {other}** ({same_untimed} of {total_untimed} of the parts "
    "that do not read machine timings).":
        "**부분 {total}개 중 {same}개가 {other}와 같은 판정** (기계 시간을 읽지 않는 부분 {total_untimed}개 중 "
        "{same_untimed}개).",
    "data": "데이터",
    "here (mean)": "이 실험 (평균)",
    "there (mean)": "다른 실험 (평균)",
    "same": "같음",
    # --- the terminal's claims table
    "claims ({where})": "주장 ({where})",
    "{data}: {decided} of {total} claims decided": "{data}: 주장 {total}개 중 {decided}개 결론남",
    # --- figures
    "no data": "데이터 없음",
    "weight w": "가중치 w",
    "objective value": "목적 함수 값",
    "L2: loss + ½λw²": "L2: 손실 + ½λw²",
    "L1: loss + α|w|": "L1: 손실 + α|w|",
    "loss a(w−w0)²/2 (a={a}, min at w0={w0})": "손실 a(w−w0)²/2 (a={a}, 최솟점 w0={w0})",
    "loss + {term}, {symbol}={value}: min at w*={w}": "손실 + {term}, {symbol}={value}: 최솟점 w*={w}",
    "penalty term {term} alone (dashed)": "벌점 항 {term}만 (점선)",
    "minimum moves toward 0 as λ grows, never reaches it: w* = a·w0/(a+λ)":
        "λ가 커질수록 최솟점이 0 쪽으로 가지만 닿지는 않음: w* = a·w0/(a+λ)",
    "minimum is exactly 0 once α ≥ a·|w0| = {bound}: w* = sign(w0)·max(|w0|−α/a, 0)":
        "α ≥ a·|w0| = {bound}이면 최솟점이 정확히 0: w* = sign(w0)·max(|w0|−α/a, 0)",
    "How a weight penalty moves the minimum of a one-weight quadratic loss":
        "가중치 벌점이 가중치 하나짜리 2차 손실의 최솟점을 옮기는 모습",
    "Learning curves: clean train vs test accuracy": "학습 곡선: 평가 모드 학습 정확도와 테스트 정확도",
    "train (clean)": "학습 (평가 모드)",
    "test": "테스트",
    "{label}, mean": "{label}, 평균",
    "{label}, ±1 std": "{label}, ±1 표준편차",
    "{arm} (n={n} seed)": "{arm} (시드 n={n})",
    "{arm} (n={n} seeds)": "{arm} (시드 n={n})",
    "epoch": "에포크",
    "accuracy (fraction correct)": "정확도 (맞힌 비율)",
    "{title} (mean ± 1 std over seeds)": "{title} (시드에 대한 평균 ± 1 표준편차)",
    "Weight values of the conv/dense layers": "합성곱/완전연결 층의 가중치 값",
    "{label}: no weights": "{label}: 가중치 없음",
    "{label} (n={n}): exactly 0: {zero}, |w|<{small}: {tiny}": "{label} (n={n}): 정확히 0: {zero}, |w|<{small}: {tiny}",
    "{label}: {n} nonzero": "{label}: 0 아닌 값 {n}개",
    "{label}: all weights exactly 0": "{label}: 모든 가중치가 정확히 0",
    "weight value w": "가중치 값 w",
    "count (log scale)": "개수 (로그 눈금)",
    "Distribution of weight values": "가중치 값의 분포",
    "every weight is exactly 0": "모든 가중치가 정확히 0",
    "log10 |w| (nonzero weights; exact zeros counted in the left legend)":
        "log10 |w| (0 아닌 가중치; 정확히 0인 것은 왼쪽 범례에 셈)",
    "Magnitudes: the dotted line is |w| = {small}": "크기: 점선은 |w| = {small}",
    "Dropout: random masks in training, and why it must be off at test time":
        "드롭아웃: 학습 때의 무작위 마스크, 그리고 테스트 때 꺼야 하는 이유",
    "Keep-masks for one sample: kept {kept} of {units} units (white kept, black dropped)":
        "한 샘플의 유지 마스크: 유닛 {units}개 중 {kept} 유지 (흰색 유지, 검은색 버림)",
    "hidden unit (dense layer input)": "은닉 유닛 (완전연결 층 입력)",
    "training step": "학습 단계",
    "no masks": "마스크 없음",
    "eval mode\n(dropout off)": "평가 모드\n(드롭아웃 끔)",
    "dropout left on\n(wrong)": "드롭아웃 켜 둠\n(잘못된 사용)",
    "{label}: mean {mean} (n={n})": "{label}: 평균 {mean} (n={n})",
    "one seed": "시드 하나",
    "test accuracy (fraction correct)": "테스트 정확도 (맞힌 비율)",
    "Test accuracy": "테스트 정확도",
    "Batch norm: one hidden feature before and after normalization":
        "배치 정규화: 은닉 특성 하나의 정규화 전과 후",
    "before BN (layer input)": "배치 정규화 전 (층 입력)",
    "activation value": "활성값",
    "after normalization z = (x − μ_B) / √(σ²_B + ε)": "정규화 후 z = (x − μ_B) / √(σ²_B + ε)",
    "normalized value z": "정규화된 값 z",
    "{n} values": "값 {n}개",
    "mean = {mean}": "평균 = {mean}",
    "± 1 std (std = {std})": "± 1 표준편차 (표준편차 = {std})",
    "density": "밀도",
    " ({layer}, feature {feature})": " ({layer}, 특성 {feature})",
    "N(0, 1) density": "N(0, 1) 밀도",
    "{label}\nmean {mean}, std {std}": "{label}\n평균 {mean}, 표준편차 {std}",
    "Batch size: test accuracy and training time, with and without batch norm":
        "배치 크기: 배치 정규화 유무에 따른 테스트 정확도와 학습 시간",
    "with BN": "배치 정규화 있음",
    "without BN": "배치 정규화 없음",
    "batch size (samples, log2 scale)": "배치 크기 (샘플 수, log2 눈금)",
    "Test accuracy (error bars: 95% CI over seeds)": "테스트 정확도 (오차 막대: 시드에 대한 95% 신뢰구간)",
    "seconds per epoch": "에포크당 초",
    "Training time per epoch": "에포크당 학습 시간",
    "Regularization techniques: test accuracy and generalization gap": "정규화 기법: 테스트 정확도와 일반화 격차",
    "train − test accuracy (fraction)": "학습 − 테스트 정확도 (비율)",
    "Generalization gap (lower: less overfitting)": "일반화 격차 (낮을수록 과대적합이 적음)",
    "mean with 95% CI over seeds": "시드에 대한 평균과 95% 신뢰구간",
    "; dotted: mean of none": "; 점선: 정규화 없음(none)의 평균",
    "Choosing each technique's strength on validation data": "검증 데이터로 각 기법의 강도 고르기",
    "one run": "학습 1회",
    "mean per value": "값마다 평균",
    "±1 standard error over seeds": "시드에 대한 ±1 표준오차",
    "chosen: {value}": "고른 값: {value}",
    "{tech} strength": "{tech} 강도",
    "validation accuracy (fraction correct)": "검증 정확도 (맞힌 비율)",
    # --- the regime map (a study over train_sizes): report and figure
    "Scope: each verdict holds over training samples of {data} at the sizes it names ({sizes} images) and "
    "initializations, at the strengths the validation sweep chose at each size.":
        "범위: 각 판정은 {data}에서 판정이 가리키는 크기({sizes}장)의 학습 샘플과 초기화 전체에 대해, 크기마다 검증 "
        "탐색으로 고른 강도에서 성립합니다.",
    "every run of a size trains about {steps} steps at batch {batch}, and at least {min_epochs} epochs (epochs per "
    "size: {epochs})":
        "각 크기의 모든 학습은 배치 {batch}로 약 {steps} 스텝, 적어도 {min_epochs} 에포크를 학습합니다 (크기별 "
        "에포크: {epochs})",
    "every run trains {epochs} epochs at every size": "모든 크기에서 {epochs} 에포크를 학습합니다",
    "Training-set sizes {sizes} (the regime map): each size is a study of its own, with its own samples, validation "
    "sweep and chosen strengths; {how}.":
        "학습 데이터 크기 {sizes} (구간 지도): 크기마다 따로 실험하며, 샘플·검증 탐색·고른 강도가 모두 크기별로 "
        "따로입니다; {how}.",
    "**{tech}** raised test accuracy at {sizes} images (most at {size}: {effect} points).":
        "**{tech}**은(는) {sizes}장에서 테스트 정확도를 높였습니다 (가장 크게는 {size}장에서 {effect}%p).",
    "**{tech}** raised test accuracy at no size tested.": "**{tech}**은(는) 시험한 어느 크기에서도 테스트 정확도를 "
                                                         "높이지 못했습니다.",
    "It lowered test accuracy at {sizes} images.": "{sizes}장에서는 테스트 정확도를 낮췄습니다.",
    "Its effect was negligible (inside ±{smallest} points) at {sizes} images.":
        "{sizes}장에서는 효과가 미미했습니다 (±{smallest}%p 이내).",
    "At {sizes} images the interval is too wide to say.": "{sizes}장에서는 구간이 넓어 판단할 수 없습니다.",
    "{n} images": "{n}장",
    "Regime map ({data}): where each technique pays": "구간 지도 ({data}): 각 기법이 효과를 내는 곳",
    "Effect of each technique on test accuracy and on the gap against training-set size, and each arm's test "
    "accuracy ({data}): a line above zero and outside the grey band pays.":
        "학습 데이터 크기에 따른 각 기법의 테스트 정확도·격차 효과와 조건별 테스트 정확도 ({data}): 0보다 위에 있고 "
        "회색 띠 밖에 있는 선이 효과를 내는 구간입니다.",
    "Test accuracy, technique minus none, in points [95% CI] and its verdict by the paired rule, before Holm's "
    "adjustment (the claims below adjust for multiple comparisons):":
        "테스트 정확도, 기법 − 없음 (%p) [95% 신뢰구간]과 대응 비교 규칙의 판정 (Holm 보정 전; 아래 주장들은 다중 "
        "비교를 보정합니다):",
    "Gap (train − test accuracy), technique minus none, in points [95% CI] (below zero: narrower):":
        "격차 (학습 − 테스트 정확도), 기법 − 없음 (%p) [95% 신뢰구간] (0보다 작으면 격차가 좁아짐):",
    "Strength chosen on validation data at each size:": "크기마다 검증 데이터로 고른 강도:",
    "Where each technique changes test accuracy (training images; paired rule, 95% interval):":
        "각 기법이 테스트 정확도를 바꾸는 곳 (학습 이미지 수; 대응 비교 규칙, 95% 구간):",
    "first pays at": "처음 효과를 내는 크기",
    "raises": "높임",
    "lowers": "낮춤",
    "negligible": "미미함",
    "cannot say": "판단 불가",
    "Test accuracy of each arm (mean over seeds):": "조건별 테스트 정확도 (시드 평균):",
    "{label}, mean ± 1 std": "{label}, 평균 ± 1 표준편차",
    # --- findings first, figures once (report)
    "Design and protocol": "설계와 실험 방법",
    "Findings": "결과 요약",
    "Figures": "그림",
    "Figure: [{caption}](#{anchor})": "그림: [{caption}](#{anchor})",
    "{title} ({data}). {caption}": "{title} ({data}). {caption}",
    "**{data}: {decided} of {total} claims decided.** {scope}":
        "**{data}: 주장 {total}개 중 {decided}개 결론남.** {scope}",
    " (+{n} more parts)": " (부분 {n}개 더)",
    "{a} raised {metric} by {amount} {ci} over {b}": "{a}은(는) {b}보다 {metric}을(를) {amount} {ci} 높였다",
    "{a} lowered {metric} by {amount} {ci} against {b}": "{a}은(는) {b}보다 {metric}을(를) {amount} {ci} 낮췄다",
    "{metric}, {a} minus {b}: {amount} {ci}": "{metric}, {a} − {b}: {amount} {ci}",
    "This verdict speaks of the strengths chosen on validation data: {strengths}.":
        "이 판정은 검증 데이터로 고른 강도에 대한 것입니다: {strengths}.",
    ", the strongest of its grid": ", 후보 중 가장 강한 값",
    ", the weakest of its grid": ", 후보 중 가장 약한 값",
    "test accuracy": "테스트 정확도",
    "clean training accuracy": "평가 모드 학습 정확도",
    "validation accuracy": "검증 정확도",
    "the train-test gap": "학습−테스트 격차",
    "clean training loss": "평가 모드 학습 손실",
    "test loss": "테스트 손실",
    "the weights' L2 norm": "가중치의 L2 노름",
    "the share of weights below 1e-3": "|w| < 1e-3인 가중치 비율",
    "the share of weights exactly 0": "정확히 0인 가중치 비율",
    "epochs to learn": "학습에 걸린 에포크",
    "techniques compared": "기법 비교",
    "learning curves": "학습 곡선",
    "strength sweeps": "강도 탐색",
    "the penalty's minimum": "페널티의 최솟점",
    "weight histograms": "가중치 히스토그램",
    "dropout at evaluation": "평가 때의 드롭아웃",
    "batch norm": "배치 정규화",
    "batch sizes": "배치 크기",
    "the regime map": "구간 지도",
    "Test accuracy and train-test gap of each technique (mean with 95% interval over seeds): a technique right of "
    "the dotted line (no technique) tested better; a gap nearer 0 overfits less.":
        "기법별 테스트 정확도와 학습−테스트 격차 (시드에 대한 평균과 95% 구간): 점선(기법 없음)보다 오른쪽이면 테스트 "
        "성능이 더 좋았고, 격차가 0에 가까울수록 과대적합이 적습니다.",
    "Learning curves: clean training accuracy every epoch (tracked images) and test accuracy where evaluated; a "
    "technique that trades fit for generalization rises more slowly in training and ends higher in test.":
        "학습 곡선: 에포크마다의 평가 모드 학습 정확도(추적 이미지)와 평가한 에포크의 테스트 정확도; 적합을 내주고 "
        "일반화를 얻는 기법은 학습 곡선이 더 천천히 오르고 테스트에서 더 높게 끝납니다.",
    "Validation accuracy against each technique's strength (the sweep): the marked point is the strength chosen, "
    "the one every verdict speaks of.":
        "기법별 강도에 따른 검증 정확도 (탐색): 표시한 점이 고른 강도이며, 모든 판정은 이 강도에 대한 것입니다.",
    "The closed-form problem of the L2 claim: the penalized minimum moves toward zero as lambda grows.":
        "L2 주장의 닫힌 형태 문제: 람다가 커질수록 페널티를 더한 최솟점이 0 쪽으로 움직입니다.",
    "Weights of the arms with weight penalties and of none: L1 piles weights at or near zero, L2 shrinks them "
    "without zeros.":
        "가중치 페널티 조건과 기법 없음의 가중치: L1은 가중치를 0 또는 0 근처에 모으고, L2는 0 없이 줄입니다.",
    "Dropout's keep-masks during training (left), and accuracy with dropout left on at evaluation against off "
    "(right): left on, it costs accuracy.":
        "학습 중 드롭아웃의 유지 마스크(왼쪽)와 평가 때 드롭아웃을 켰을 때와 껐을 때의 정확도(오른쪽): 켜 두면 "
        "정확도를 잃습니다.",
    "One feature before and after batch normalization: mean 0 and std 1 after it (before scale and shift).":
        "배치 정규화 전후의 한 특성: 정규화 뒤(스케일·시프트 전) 평균 0, 표준편차 1.",
    "Test accuracy and seconds per epoch at each batch size, with and without batch norm.":
        "배치 크기별 테스트 정확도와 에포크당 초, 배치 정규화가 있을 때와 없을 때.",
    "The regime map: each technique's effect on test accuracy and on the gap against training-set size, and each "
    "arm's test accuracy; a line above zero and outside the grey band pays.":
        "구간 지도: 학습 데이터 크기에 따른 각 기법의 테스트 정확도·격차 효과와 조건별 테스트 정확도; 0보다 위에 있고 "
        "회색 띠 밖에 있는 선이 효과를 내는 구간입니다.",
    "Where each technique pays, by training-set size": "학습 데이터 크기별로 각 기법이 효과를 내는 곳",
    "test accuracy: technique − none (points)": "테스트 정확도: 기법 − 없음 (%p)",
    "Effect on test accuracy": "테스트 정확도에 대한 효과",
    "gap: technique − none (points)": "격차: 기법 − 없음 (%p)",
    "Effect on the gap (below 0: narrower)": "격차에 대한 효과 (0 아래: 좁아짐)",
    "smallest effect of interest": "의미 있는 최소 효과",
    "training images (log scale)": "학습 이미지 수 (로그 눈금)",
    "mean with 95% CI over paired seeds": "대응 시드에 대한 평균과 95% 신뢰구간",
    "Test accuracy of each arm": "조건별 테스트 정확도",
}


# Technique names as the figures show them in Korean (the README promises figure labels in the lecture's terms); the
# names themselves stay English in results.csv, verdicts.json and the run folders. Every technique of the registry
# has its entry (a test checks).
TECHNIQUES_KO: dict[str, str] = {
    "none": "정규화 없음",
    "l2": "L2 정규화",
    "l1": "L1 정규화",
    "noise": "잡음 주입",
    "dropout": "드롭아웃",
    "bn": "배치 정규화",
}
# The lecture's variants of a technique, by the suffix of their arm name (l2-bias, l1-prox, bn-post, bn-sync).
VARIANTS_KO: dict[str, str] = {
    "bias": "편향 포함",
    "prox": "proximal",
    "post": "활성화 뒤",
    "sync": "전체 배치 통계",
}
_BATCH_ARM = re.compile(r"b(\d+)")  # none-b8, bn-b128: the batch-size arms


def technique_label(name: str, lang: str = "en") -> str:
    """An arm or technique name as a figure labels it: in Korean the lecture's term ("dropout" -> "드롭아웃",
    "bn-post" -> "배치 정규화 (활성화 뒤)", "dropout=0.5+l2=1e-3" -> "드롭아웃=0.5+L2 정규화=1e-3"); in English, and
    for a name of the user's own, the name as it is."""
    if lang != "ko":
        return name
    parts = [_technique_ko(part) for part in str(name).split("+")]
    return "+".join(parts) if all(parts) else name


def _technique_ko(part: str) -> str | None:
    base, eq, value = part.partition("=")
    if eq:  # a spec as `sandbag compare` names its arms: the technique, then its strength
        return f"{TECHNIQUES_KO[base]}={value}" if base in TECHNIQUES_KO else None
    base, dash, variant = part.partition("-")
    if base not in TECHNIQUES_KO:
        return None
    if not dash:
        return TECHNIQUES_KO[base]
    batch = _BATCH_ARM.fullmatch(variant)
    if batch:
        return f"{TECHNIQUES_KO[base]} (배치 {batch[1]})"
    return f"{TECHNIQUES_KO[base]} ({VARIANTS_KO[variant]})" if variant in VARIANTS_KO else None


def translator(lang: str = "en") -> Callable[..., str]:
    """``t(template, **fields)``: the template in `lang` with its fields filled in (English for a template the
    catalog lacks, recorded in MISSING)."""
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; valid: {', '.join(LANGS)}")

    def t(template: str, **fields) -> str:
        text = template
        if lang == "ko":
            text = KO.get(template)
            if text is None:
                MISSING.add(template)
                text = template
        return text.format(**fields) if fields else text

    return t
