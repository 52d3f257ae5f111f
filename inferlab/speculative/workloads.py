"""The two workloads of lab 09, as chat messages built from a seed: one whose answer copies from its
prompt (repeat a short report word for word: prompt lookup finds most of the answer there) and one
that is open-ended (a short story: the answer is new text)."""
from __future__ import annotations

import random

CITIES = ["Leeds", "Porto", "Lyon", "Graz", "Aarhus", "Utrecht", "Bilbao", "Tampere", "Brno", "Cork"]
PRODUCTS = ["garden tools", "bicycle parts", "kitchen scales", "desk lamps", "rain jackets", "school bags"]
CHARACTERS = ["a lighthouse keeper", "a retired pilot", "a young baker", "a museum guard", "a ferry captain",
              "a beekeeper", "a night-shift nurse", "a chess teacher"]
EVENTS = ["finds a message in a bottle", "hears a knock at midnight", "receives a letter from the future",
          "discovers a hidden room", "misses the last train home", "finds a map in a library book"]


def report(rng: random.Random) -> str:
    """A short made-up business report: numbers, names and dates a copy must get exactly right."""
    city, product = rng.choice(CITIES), rng.choice(PRODUCTS)
    revenue, growth = round(rng.uniform(1.5, 9.5), 1), rng.randint(3, 25)
    costs, dividend = round(revenue * rng.uniform(0.5, 0.8), 1), rng.randint(5, 40)
    day = rng.randint(2, 27)
    return (f"The quarterly report shows revenue of {revenue} million euros from {product}, up {growth} percent "
            f"from last year. Operating costs fell to {costs} million euros after the move to the new warehouse "
            f"in {city}. The board approved a dividend of {dividend} cents per share, payable on {day} June to "
            f"holders of record on {day - 1} June.")


def copy_messages(n: int, seed: int = 0) -> list[list[dict]]:
    """n chats that ask to repeat a report exactly."""
    rng = random.Random(seed)
    return [[{"role": "user", "content": "Repeat the following text exactly, word for word:\n\n" + report(rng)}]
            for _ in range(n)]


def open_messages(n: int, seed: int = 0) -> list[list[dict]]:
    """n chats that ask for a short story."""
    rng = random.Random(seed)
    return [[{"role": "user", "content": f"Write a short story about {rng.choice(CHARACTERS)} who "
                                         f"{rng.choice(EVENTS)}."}] for _ in range(n)]
