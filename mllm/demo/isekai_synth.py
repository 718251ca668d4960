"""Synthetic "ISEKAI" data: procedurally drawn concepts with made-up names, split into SEEN concepts (training)
and UNSEEN concepts (evaluation only), written in the real ISEKAI / LCL class-pairs / LLaVA-instruct formats so
the real loaders read them unchanged (the CPU-scale reproduction of the LCL paper's claim, issue 9).

A concept is one combination (shape, pattern, colour) of SHAPES x PATTERNS x COLOURS (6 x 4 x 8 = 192) with a
made-up pronounceable lower-case name (seeded, unique, `name_letters` long: 4..9 letters by default; never an
English word of STOPLIST nor an attribute word). `phrases` words the single-image file as the episodes are worded.
Every image of a concept draws that shape filled with that pattern in that colour, with seeded jitter of
position, size, rotation, pattern phase/period and background shade, so no two images of a concept are alike.
The combinations are permuted by the seed; the first `num_seen` are SEEN, the next `num_unseen` UNSEEN, so the
two splits share no name and no (shape, pattern, colour) combination (single attribute values are shared:
the unseen concepts are new compositions of known parts).

Files under `root` (all image paths relative to `root/images`, the image folder / image root of every loader):
  images/<concept_id>/<k>.png   k = 0 .. images_per_concept-1, RGB PNG of image_size x image_size;
  train_pairs.jsonl   LCLEpisodeDataset (training class-pairs file) over the SEEN concepts:
                      {"class_id", "class_name", "samples": [every image], "neighbors": [[class_id, class_name,
                      first image], ...]} with the neighbours = the other seen concepts ranked by attribute
                      similarity (`similarity`: shared attributes, shape weighing most), most similar first;
  test_pairs.jsonl    LCLTestEpisodeDataset over the UNSEEN concepts (an even number, paired 0-1, 2-3, ...):
                      {"class_id", "class_name", "context_samples": images[:-queries_per_concept],
                      "test_samples": images[-queries_per_concept:]};
  isekai_unseen.json  ISEKAIDataset (JSON Lines named .json) over the same pairs of unseen concepts: for the pair
                      (a, b) one record per test image q of a ({"image_name": q, "positive_list": a's context
                      images, "negative_list": b's, "positive_promt": name(a), "negative_promt": name(b),
                      "label_name": name(a)}) and likewise per test image of b (positive a, negative b,
                      label name(b)), so the answer is the positive prompt half of the time;
  seen_single.jsonl   LLaVAInstructDataset (JSON Lines) for the vanilla single-image baseline: one record per
                      seen image, {"id", "image", "conversations": [human '<image>\\nWhat is shown in this
                      image?', gpt 'There is "<name>" in the image.']}, the episodes' own phrasing
                      (EPISODE_PHRASES, or `phrases` as the episode datasets take them), so the baseline
                      is asked and answers exactly like an episode's support example;
  info.json           the arguments, counts, every concept (id, name, attributes, split) and the paths; written
                      last, so its presence with the same arguments means the data is complete and is reused.
Same arguments -> byte-identical files. Run `python -m mllm.demo.isekai_synth --root DIR`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random

import numpy as np

SHAPES = ('circle', 'square', 'triangle', 'diamond', 'hexagon', 'star')
PATTERNS = ('solid', 'stripes', 'dots', 'checker')
COLOURS = {
    'red': (210, 40, 40), 'orange': (235, 130, 20), 'yellow': (225, 200, 20), 'green': (40, 160, 60),
    'cyan': (30, 180, 200), 'blue': (40, 70, 210), 'purple': (140, 50, 180), 'brown': (120, 75, 35),
}
ATTRIBUTES = ('shape', 'pattern', 'colour')
# similarity of two concepts: the weights of the attributes they share (shape is the most visible)
WEIGHTS = {'shape': 4, 'pattern': 2, 'colour': 1}
# small stoplist: English words (and the attribute words) a made-up name must never be; the short ones matter
# for names of 2-3 letters (name_letters), where a real word would also be one token of the demo tokenizer
STOPLIST = frozenset("""
able area baby back bake ball band bank base bath bean bear beat bell belt best bike bird boat body bone book
boot born boss bowl cake call calm came camp cane care case cave city coat code come cone cook cool cope core
cute dame data date deal dear debt deep dime dine dive dome done door dose dove duke dune fade fake fame fare
fate feed feel fine fire five food fool fume fuse gala game gate gave gene gone good hate have hero hide hole
home hope hose kale kite lady lake lame lane late lava lemon lime line lobe lone look lose love lure made
male mane mare mate meal melon menu mile mine mole mood more mule muse name nine node none nose note open
pale pane papa pile pine pole polo pony pose pure race rage rake rate ride ripe robe robot rode role rope
rose rude rule safe sale same sane save side sofa sole some song soda sure tale tame tape taro tide tile
time tone tope tube tuna tune vase vine vote wade wage wake wine wise wore zone banana potato tomato camera
pilot salad zebra mango piano radio video tobacco volcano casino domino hero lotus limo motel hotel panda
pasta pizza sauna tango tiger sugar super paper vapor minor major timber number summer winter dinner
all am an and any are as ask at bad bag ban bar bat be bed bet bid big bin bit box bun bus but by can car day
den did dig dim din dip do dot end fan far fat fin fit fix for fox fun fur get go gun had has he her him his
how if in is it its jar kit lab let lid lip log lot man map mat max may me men mix mud my net new no nor not
now nun nut of off old on one or our out own pal pan pen pin pot pun put ran red rib rob rod rot rug run sat
see set she sin sir sit six so son sun tan tar tax ten the tin to ton too top two up us use van vat vet was
wax way we who why yes yet you zen zip
""".split()) | frozenset(SHAPES) | frozenset(PATTERNS) | frozenset(COLOURS)
ONSETS = ('b', 'd', 'f', 'g', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'z', 'sh', 'th', 'kr', 'pl', 'tr')
VOWELS = ('a', 'e', 'i', 'o', 'u', 'ai', 'ou')
CODAS = ('', '', '', 'n', 'r', 'l', 'x', 's')
BACKGROUND = (236, 236, 236)
VERSION = 2  # 2: short names (name_letters) and the short words of STOPLIST


def all_concepts() -> list[dict]:
    """Every (shape, pattern, colour) combination, in a fixed order."""
    return [{'shape': s, 'pattern': p, 'colour': c} for s in SHAPES for p in PATTERNS for c in COLOURS]


def similarity(a: dict, b: dict) -> int:
    """Sum of WEIGHTS over the attributes `a` and `b` share (0 .. 7)."""
    return sum(w for k, w in WEIGHTS.items() if a[k] == b[k])


def rank_neighbors(concepts: list[dict], index: int) -> list[int]:
    """Indices of the other concepts, most similar to concepts[index] first (ties: list order)."""
    me = concepts[index]
    others = [j for j in range(len(concepts)) if j != index]
    return sorted(others, key=lambda j: (-similarity(me, concepts[j]), j))


def made_up_names(count: int, seed: int, letters: tuple = (4, 9)) -> list[str]:
    """`count` unique pronounceable lower-case pseudo-words of `letters` = (fewest, most) letters, none in
    STOPLIST. Words of 4 letters or more have 2-3 syllables, shorter ones 1-2."""
    lo, hi = letters
    syllables = (2, 2, 3) if lo >= 4 else (1, 1, 2)
    rng = random.Random(f'isekai-names:{seed}')
    names, taken = [], set()
    for _ in range(200 * count + 1000):
        if len(names) == count:
            break
        word = ''.join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(rng.choice(syllables)))
        word += rng.choice(CODAS)
        if lo <= len(word) <= hi and word not in taken and word not in STOPLIST:
            taken.add(word)
            names.append(word)
    if len(names) < count:
        raise ValueError(f'made_up_names: only {len(names)} distinct names of {lo}..{hi} letters found, '
                         f'{count} needed; widen the letter range')
    return names


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == 'circle':
        points = [(1.0, 2 * math.pi * k / 48) for k in range(48)]
    elif shape == 'square':
        points = [(1.0, math.pi / 4 + math.pi / 2 * k) for k in range(4)]
    elif shape == 'triangle':
        points = [(1.0, -math.pi / 2 + 2 * math.pi / 3 * k) for k in range(3)]
    elif shape == 'diamond':  # a rhombus, taller than wide
        return [(cx + x * math.cos(angle) - y * math.sin(angle), cy + x * math.sin(angle) + y * math.cos(angle))
                for x, y in ((0, -r), (0.6 * r, 0), (0, r), (-0.6 * r, 0))]
    elif shape == 'hexagon':
        points = [(1.0, math.pi / 3 * k) for k in range(6)]
    elif shape == 'star':
        points = [(1.0 if k % 2 == 0 else 0.45, -math.pi / 2 + math.pi / 5 * k) for k in range(10)]
    else:
        raise ValueError(f'unknown shape {shape!r}')
    return [(cx + r * f * math.cos(t + angle), cy + r * f * math.sin(t + angle)) for f, t in points]


def _texture(pattern: str, size: int, rng: random.Random) -> np.ndarray:
    """A size x size boolean map: True where the pattern shows the concept's colour."""
    if pattern == 'solid':
        return np.ones((size, size), dtype=bool)
    theta = rng.uniform(0, math.pi)
    period = size * rng.uniform(0.12, 0.18)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (x * math.cos(theta) + y * math.sin(theta)) / period + rng.random()
    v = (-x * math.sin(theta) + y * math.cos(theta)) / period + rng.random()
    if pattern == 'stripes':
        return np.floor(u) % 2 == 0
    if pattern == 'checker':
        return (np.floor(u) + np.floor(v)) % 2 == 0
    if pattern == 'dots':
        du, dv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
        return du * du + dv * dv < 0.3 ** 2
    raise ValueError(f'unknown pattern {pattern!r}')


def draw_concept_image(concept: dict, size: int, rng: random.Random):
    """One PIL image of `concept`; all the variation comes from `rng`."""
    from PIL import Image, ImageDraw

    shade = rng.randint(-10, 10)
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = [min(255, max(0, c + shade)) for c in BACKGROUND]
    r = size * rng.uniform(0.28, 0.40)
    margin = r * 1.05
    cx, cy = rng.uniform(margin, size - margin), rng.uniform(margin, size - margin)
    mask_image = Image.new('L', (size, size), 0)
    ImageDraw.Draw(mask_image).polygon(_polygon(concept['shape'], cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=255)
    mask = np.asarray(mask_image) > 0
    colour = np.array(COLOURS[concept['colour']], dtype=np.int16) + np.array([rng.randint(-12, 12) for _ in range(3)])
    colour = np.clip(colour, 0, 255)
    pale = np.clip(colour + (255 - colour) * 0.65, 0, 255)  # the pattern's second tone: the colour washed out
    texture = _texture(concept['pattern'], size, rng)
    canvas[mask & texture] = colour.astype(np.uint8)
    canvas[mask & ~texture] = pale.astype(np.uint8)
    return Image.fromarray(canvas, 'RGB')


def _write_jsonl(path: str, records: list[dict]) -> None:
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + '\n')
    os.replace(path + '.tmp', path)


def generate_isekai_synth(root: str, num_seen: int = 24, num_unseen: int = 10, images_per_concept: int = 12,
                          image_size: int = 64, seed: int = 0, queries_per_concept: int = 2,
                          name_letters: tuple = (4, 9), phrases: dict | None = None) -> dict:
    """Write the synthetic ISEKAI data under `root` (module docstring); reuse it when root/info.json holds
    the same arguments. Returns info.json's content plus 'skipped' (True when reused)."""
    total = len(SHAPES) * len(PATTERNS) * len(COLOURS)
    for name, value, low in (('num_seen', num_seen, 2), ('num_unseen', num_unseen, 2),
                             ('images_per_concept', images_per_concept, 2), ('image_size', image_size, 16),
                             ('seed', seed, 0), ('queries_per_concept', queries_per_concept, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f'generate_isekai_synth: {name} must be an integer >= {low}, got {value!r}')
    from ..dataset.multi_image_dataset.episodes import LABEL, episode_phrases
    from ..dataset.multi_image_dataset.lcl_episodes import check_name_letters
    from ..dataset.root import IMAGE_PLACEHOLDER
    wording = episode_phrases(phrases)  # the episodes' phrases, for seen_single.jsonl
    name_letters = check_name_letters('generate_isekai_synth', name_letters)
    if num_unseen % 2:
        raise ValueError(f'generate_isekai_synth: num_unseen must be even (test episodes pair the unseen '
                         f'concepts 0-1, 2-3, ...), got {num_unseen}')
    if num_seen + num_unseen > total:
        raise ValueError(f'generate_isekai_synth: num_seen + num_unseen = {num_seen + num_unseen} exceeds the '
                         f'{total} (shape, pattern, colour) combinations')
    if queries_per_concept >= images_per_concept:
        raise ValueError(f'generate_isekai_synth: queries_per_concept ({queries_per_concept}) must be smaller than '
                         f'images_per_concept ({images_per_concept}): the rest are the unseen concepts\' context')
    params = {'num_seen': num_seen, 'num_unseen': num_unseen, 'images_per_concept': images_per_concept,
              'image_size': image_size, 'seed': seed, 'queries_per_concept': queries_per_concept,
              'version': VERSION, **({} if name_letters == (4, 9) else {'name_letters': list(name_letters)}),
              **({'phrases': dict(sorted(phrases.items()))} if phrases else {})}
    folder = os.path.join(root, 'images')
    paths = {name: os.path.join(root, name) for name in
             ('train_pairs.jsonl', 'test_pairs.jsonl', 'isekai_unseen.json', 'seen_single.jsonl', 'info.json')}
    info_path = paths['info.json']
    if os.path.isfile(info_path):
        with open(info_path, encoding='utf-8') as f:
            info = json.load(f)
        if info.get('params') == params and all(os.path.isfile(p) for p in paths.values()):
            return dict(info, skipped=True)

    combos = all_concepts()
    order = list(range(total))
    random.Random(f'isekai-split:{seed}').shuffle(order)
    names = made_up_names(num_seen + num_unseen, seed, name_letters)
    concepts = []
    for rank, combo_index in enumerate(order[:num_seen + num_unseen]):
        concepts.append(dict(combos[combo_index], id=f'c{combo_index:03d}', name=names[rank],
                             split='seen' if rank < num_seen else 'unseen'))
    seen, unseen = concepts[:num_seen], concepts[num_seen:]

    images = {}
    for c in concepts:
        os.makedirs(os.path.join(folder, c['id']), exist_ok=True)
        images[c['id']] = []
        for k in range(images_per_concept):
            rel = f"{c['id']}/{k}.png"
            rng = random.Random(f"isekai-image:{seed}:{c['id']}:{k}")
            draw_concept_image(c, image_size, rng).save(os.path.join(folder, rel), format='PNG')
            images[c['id']].append(rel)

    train = []
    for i, c in enumerate(seen):
        neighbors = [[seen[j]['id'], seen[j]['name'], images[seen[j]['id']][0]] for j in rank_neighbors(seen, i)]
        train.append({'class_id': c['id'], 'class_name': c['name'], 'samples': list(images[c['id']]),
                      'neighbors': neighbors})
    split_at = images_per_concept - queries_per_concept
    test = [{'class_id': c['id'], 'class_name': c['name'], 'context_samples': images[c['id']][:split_at],
             'test_samples': images[c['id']][split_at:]} for c in unseen]
    isekai = []
    for a, b in zip(unseen[0::2], unseen[1::2], strict=True):
        for label in (a, b):
            for query in images[label['id']][split_at:]:
                isekai.append({'image_name': query, 'positive_list': images[a['id']][:split_at],
                               'negative_list': images[b['id']][:split_at], 'positive_promt': a['name'],
                               'negative_promt': b['name'], 'label_name': label['name']})
    question = wording['support_question']  # as LLaVA's instruct files: image first on a line of its own, unless placed
    question = question if IMAGE_PLACEHOLDER in question else IMAGE_PLACEHOLDER + '\n' + question
    single = [{'id': f"{c['id']}_{k}", 'image': rel,
               'conversations': [{'from': 'human', 'value': question},
                                 {'from': 'gpt', 'value': wording['answer'].replace(LABEL, c['name'])}]}
              for c in seen for k, rel in enumerate(images[c['id']])]
    _write_jsonl(paths['train_pairs.jsonl'], train)
    _write_jsonl(paths['test_pairs.jsonl'], test)
    _write_jsonl(paths['isekai_unseen.json'], isekai)
    _write_jsonl(paths['seen_single.jsonl'], single)

    info = {
        'params': params,
        'counts': {'seen': num_seen, 'unseen': num_unseen, 'images': len(concepts) * images_per_concept,
                   'train_pairs': len(train), 'test_pairs': len(test), 'isekai_unseen': len(isekai),
                   'seen_single': len(single)},
        'seen_names': [c['name'] for c in seen],
        'unseen_names': [c['name'] for c in unseen],
        'concepts': [{k: c[k] for k in ('id', 'name', 'split', *ATTRIBUTES)} for c in concepts],
        'files': {'image_folder': 'images', **{k.split('.')[0]: k for k in paths if k != 'info.json'}},
    }
    with open(info_path + '.tmp', 'w', encoding='utf-8') as f:
        json.dump(info, f, indent=1, ensure_ascii=False)
        f.write('\n')
    os.replace(info_path + '.tmp', info_path)
    return dict(info, skipped=False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description='Generate the synthetic ISEKAI data (seen / unseen made-up concepts).')
    p.add_argument('--root', required=True)
    p.add_argument('--num-seen', type=int, default=24)
    p.add_argument('--num-unseen', type=int, default=10)
    p.add_argument('--images-per-concept', type=int, default=12)
    p.add_argument('--image-size', type=int, default=64)
    p.add_argument('--queries-per-concept', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    info = generate_isekai_synth(a.root, a.num_seen, a.num_unseen, a.images_per_concept, a.image_size, a.seed,
                                 a.queries_per_concept)
    print(json.dumps({k: info[k] for k in ('params', 'counts', 'files', 'skipped')}, indent=1))


if __name__ == '__main__':
    main()
