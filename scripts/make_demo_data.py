#!/usr/bin/env python3
"""Generate the demo tuning data under ``include/demo/`` (deterministic, stdlib only).

Usage::

    python scripts/make_demo_data.py            # writes include/demo/*
    python scripts/make_demo_data.py --out DIR  # writes somewhere else

The task is customer-support ticket routing: every ticket belongs to one of six
queues (``billing``, ``shipping``, ``technical``, ``account``, ``refund``,
``other``).  Tickets are assembled from per-label issue templates and detail
sentences, slot vocabulary (products, plans, order numbers, dates...) and shared
noise (greetings, filler, sign-offs) that carries no label signal.  Three
difficulties are generated:

* ``easy``      – one label-specific issue sentence (+ maybe a detail sentence);
* ``hard``      – no issue sentence, only the weaker label-specific detail sentences;
* ``ambiguous`` – an issue sentence of the true label *and* one of a related label
  (e.g. a double charge for which a refund is asked).  The label is the first-mentioned
  topic, which a bag-of-words learner can only guess, so nobody should reach 100%.

Held-out evaluation tickets also use issue templates that never appear in the
training set, and no evaluation ticket is identical to a training ticket.

The same random seed always yields byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20240611
LABELS = ("billing", "shipping", "technical", "account", "refund", "other")
SYSTEM_INSTRUCTION = (
    "You are a customer-support triage assistant. Route the ticket to exactly one queue: "
    "billing, shipping, technical, account, refund or other. Answer with the label only."
)
# How many examples of each label (a realistic, mildly imbalanced mix).
TRAIN_COUNTS = {"billing": 68, "shipping": 66, "technical": 64, "account": 60, "refund": 60, "other": 42}
EVAL_COUNTS = {"billing": 22, "shipping": 22, "technical": 21, "account": 20, "refund": 20, "other": 15}
DIFFICULTY_WEIGHTS = (("easy", 0.68), ("hard", 0.16), ("ambiguous", 0.16))
# The last N issue templates of every label are held out of the training set.
HELD_OUT_TEMPLATES = 3

SLOTS = {
    "product": [
        "wireless headphones", "standing desk", "coffee grinder", "yoga mat", "phone case",
        "smart thermostat", "hiking backpack", "air purifier", "running shoes", "desk lamp",
        "blender", "gaming mouse", "electric kettle", "office chair", "baby monitor",
    ],
    "plan": ["Pro plan", "Basic subscription", "Family plan", "annual membership", "Premium tier", "Team plan"],
    "date": [
        "last Tuesday", "on March 3", "two weeks ago", "yesterday", "over the weekend",
        "on the 14th", "ten days ago", "last month", "on Friday", "earlier this week",
    ],
    "month": ["January", "February", "March", "April", "May", "June", "July", "September", "October", "November"],
    "country": ["Canada", "Germany", "Brazil", "Japan", "Australia", "Ireland", "Mexico", "Spain", "Norway"],
    "city": ["Lyon", "Denver", "Manchester", "Austin", "Rotterdam", "Porto", "Calgary", "Leeds", "Tucson"],
    "browser": ["Firefox", "Chrome", "Safari", "Edge"],
    "device": ["Android", "iPhone", "iPad", "Windows", "Mac"],
    "os": ["iOS", "Android", "Windows 11", "macOS"],
    "code": ["E102", "E4007", "503", "0x80070005", "AUTH-17", "SYNC-3", "E-221"],
    "version": ["4.2.1", "5.0.3", "3.9.12", "6.1.0", "5.4.2"],
    "name": ["Maria", "Tom", "Aisha", "Kenji", "Lucia", "Omar", "Priya", "Jonas", "Chloe", "Diego", "Fatima", "Sam"],
    "business": ["cycling club", "small design studio", "coworking space", "local radio station", "school", "bakery"],
    "topic": ["online shopping habits", "small business logistics", "consumer electronics", "remote work"],
    "event": ["my sister's wedding", "the holidays", "my trip next week", "the school term", "my birthday"],
    "event2": ["charity run", "street festival", "chess tournament", "book fair"],
    "n": ["9", "12", "15", "18", "21", "25"],
    "years": ["two", "three", "five", "seven", "ten"],
}

ISSUES = {
    "billing": [
        "I was charged twice for my {plan} this month.",
        "There is a charge of ${amount} on my card that I don't recognize.",
        "My invoice for {month} shows the wrong amount.",
        "My credit card payment keeps getting declined when I try to pay for the {plan}.",
        "I need to update the payment method on file before my next bill.",
        "Why did the price of my {plan} go up from ${amount} to ${amount2}?",
        "Can you send me a VAT invoice for order {order}?",
        "I was billed for the {plan} even though I downgraded to the free tier.",
        "The receipt for order {order} lists a sales tax amount that looks wrong.",
        # held out of training:
        "I'd like to switch my {plan} from monthly billing to yearly billing.",
        "There's an unexpected service fee of ${amount} on my latest statement.",
        "My bank shows a pending authorization of ${amount} from your company.",
    ],
    "shipping": [
        "My {product} still hasn't arrived and it's been {n} days.",
        "The tracking for order {order} was last updated {date} and nothing since.",
        "The courier marked my package as delivered but nothing was at my door.",
        "Can I change the delivery address for order {order}? It hasn't shipped yet.",
        "My parcel with the {product} seems to be stuck in customs.",
        "I paid for express shipping but the {product} is coming by standard post.",
        "The delivery date for my {product} keeps getting pushed back.",
        "Do you ship to {country}, and how long does delivery usually take?",
        "The package was left with a neighbour I don't know.",
        # held out of training:
        "Half of my order arrived but the {product} was not in the box.",
        "The carrier says the address label on my parcel is unreadable.",
        "When will order {order} be dispatched from your warehouse?",
    ],
    "technical": [
        "The app crashes every time I open the settings screen.",
        "I get error code {code} when I try to upload a file.",
        "The website won't load in {browser}; it just shows a blank page.",
        "Since the latest update the {device} app keeps freezing.",
        "Sync between my phone and my laptop stopped working.",
        "My {product} won't pair over Bluetooth with my phone.",
        "Notifications stopped coming through after I updated {os}.",
        "The export to CSV button does nothing when I click it.",
        "Your API returns a server error for every request since this morning.",
        # held out of training:
        "The installer fails halfway through with a 'missing file' message.",
        "Pages take over a minute to load and the dashboard times out.",
        "The firmware update for my {product} failed and now it won't turn on.",
    ],
    "account": [
        "I forgot my password and the reset link never arrives.",
        "Please change the email address on my account to my new work address.",
        "I'd like to delete my account and all my personal data.",
        "My account has been locked after too many sign-in attempts.",
        "How do I turn on two-factor authentication for my login?",
        "I lost my phone and can't get the two-factor code to sign in anymore.",
        "Can I change my username? The current one has a typo.",
        "I accidentally created two accounts and want to merge them.",
        "How do I add a second user to my family profile?",
        # held out of training:
        "Someone seems to have signed in to my account from {country}.",
        "I want to update the phone number on my profile.",
        "I never received the verification email to activate my account.",
    ],
    "refund": [
        "I returned the {product} {date} and I still haven't received my refund.",
        "I'd like a refund for order {order}; the {product} arrived broken.",
        "How long does it take for a refund to show up on my card?",
        "Please cancel order {order} and refund me the full amount.",
        "The {product} doesn't match the description, so I want my money back.",
        "Can you send me a return label so I can send back the {product}?",
        "You approved my refund but only paid back ${amount} instead of ${amount2}.",
        "I'm within the 30-day window and would like to return the {product}.",
        "The {product} stopped working after a week and I want a refund, not a replacement.",
        # held out of training:
        "I cancelled my {plan} on day one and I'm asking for the money back.",
        "Is return postage free if I send back the {product} for a refund?",
        "I was promised a refund to my original payment method, not store credit.",
    ],
    "other": [
        "Do you have any job openings in your customer care team?",
        "I just wanted to say the {product} is fantastic, thank you!",
        "Would you be interested in a partnership with our {business}?",
        "What are the opening hours of your store in {city}?",
        "I'm a journalist writing about {topic}; could someone answer a few questions?",
        "Do you offer discounts for schools or non-profits?",
        "Could you add a dark mode? It would be a lovely feature.",
        "Do you sponsor local events like our {event2}?",
        "Is the {product} made with recycled materials?",
        # held out of training:
        "Where can I read your company's sustainability report?",
        "Can I visit your showroom to see the {product} in person?",
        "Is there a way to leave feedback about one of your staff members?",
    ],
}

DETAILS = {
    "billing": [
        "The charge appeared on my statement {date}.",
        "I only have one subscription, so this must be a mistake.",
        "My company needs the invoice to include our tax ID.",
        "My bank says the payment definitely came from you.",
        "The billing address on the invoice is also out of date.",
        "Please correct the amount before the next billing cycle.",
        "I was charged ${amount} but the plan page says ${amount2}.",
    ],
    "shipping": [
        "The tracking page just says 'in transit'.",
        "I need it before {event}, so the timing matters.",
        "The local post office has no record of the parcel.",
        "The estimated delivery date was {date}.",
        "My building has a front desk that accepts deliveries.",
        "The courier's phone line just rings out.",
        "It was supposed to be delivered {date} at the latest.",
    ],
    "technical": [
        "I've already tried reinstalling and clearing the cache.",
        "I'm on version {version} of the app.",
        "Restarting my {device} didn't help.",
        "The log says 'connection reset by peer'.",
        "It happens on both Wi-Fi and mobile data.",
        "A screenshot of the error is attached.",
        "It worked fine until the update {date}.",
    ],
    "account": [
        "The account is registered under my old email address.",
        "I've tried the 'forgot password' page three times.",
        "I can still access my old inbox if you need to verify me.",
        "My profile still shows my previous surname.",
        "I'm worried someone else knows my login details.",
        "My username is {name}{n} if that helps.",
        "I can't get past the sign-in screen at all.",
    ],
    "refund": [
        "The item is unused and still in its original packaging.",
        "I've attached photos of the damage.",
        "Your warehouse marked the return as received {date}.",
        "I'd prefer the money back rather than store credit.",
        "Your returns policy says this should be covered.",
        "I sent it back with the prepaid label from the box.",
        "It has been {n} days since I sent the item back.",
    ],
    "other": [
        "No rush on this at all.",
        "I'm happy to share more details if useful.",
        "Our team is based in {city}.",
        "A colleague recommended I reach out to you.",
        "This isn't a complaint, just a question.",
        "I couldn't find the right contact on your website.",
        "Feel free to forward this to the right person.",
    ],
}

# Which other labels an ambiguous ticket of a given label borrows an issue from.
CONFUSABLE = {
    "billing": ("refund", "account"),
    "shipping": ("refund", "billing"),
    "technical": ("account", "other"),
    "account": ("technical", "billing"),
    "refund": ("billing", "shipping"),
    "other": ("technical", "shipping"),
}
CONNECTORS = ("Also, ", "On top of that, ", "And separately, ", "Related to that, ", "")

GREETINGS = ("Hi,", "Hello,", "Hi there,", "Good morning,", "Dear support team,", "Hey,", "", "", "")
FILLER = (
    "I've been a customer for {years} years.",
    "This is the second time I'm writing about this.",
    "I'm writing from my phone, so sorry for any typos.",
    "Thanks in advance for your help.",
    "Hope you're having a good day.",
    "I looked through the help center but couldn't find an answer.",
    "My order number is {order} in case you need it.",
    "Please get back to me as soon as possible.",
    "I'm a bit frustrated, to be honest.",
    "My name is {name}.",
    "I usually love your service.",
    "Let me know if you need anything else from me.",
    "I ordered the {product} {date}.",
    "I'm using the {plan}.",
)
SIGNOFFS = ("Thanks, {name}", "Best, {name}", "Regards, {name}", "Cheers", "Thank you!", "", "", "")


def _fill(template: str, rng: random.Random) -> str:
    values = {key: rng.choice(options) for key, options in SLOTS.items()}
    values["order"] = f"#{rng.randint(10000, 999999)}"
    amount = rng.choice((9, 12, 15, 19, 24, 29, 39, 49, 59, 79, 99, 129, 149))
    values["amount"] = f"{amount}.{rng.choice(('00', '99', '50'))}"
    values["amount2"] = f"{amount + rng.choice((5, 10, 20, 30))}.00"
    return template.format(**values)


def _lower_first(sentence: str) -> str:
    return sentence[0].lower() + sentence[1:] if sentence[:2] != "I " and sentence[:2] != "I'" else sentence


def make_ticket(label: str, difficulty: str, rng: random.Random, *, held_out_ok: bool) -> str:
    issues = ISSUES[label] if held_out_ok else ISSUES[label][:-HELD_OUT_TEMPLATES]
    body: list[str] = []
    if difficulty == "easy":
        body.append(_fill(rng.choice(issues), rng))
        if rng.random() < 0.6:
            body.append(_fill(rng.choice(DETAILS[label]), rng))
    elif difficulty == "hard":
        for detail in rng.sample(DETAILS[label], 2 if rng.random() < 0.3 else 1):
            body.append(_fill(detail, rng))
    else:  # ambiguous: the true topic first, then an issue of a confusable label
        other = rng.choice(CONFUSABLE[label])
        other_issues = ISSUES[other] if held_out_ok else ISSUES[other][:-HELD_OUT_TEMPLATES]
        body.append(_fill(rng.choice(issues), rng))
        body.append(rng.choice(CONNECTORS) + _lower_first(_fill(rng.choice(other_issues), rng)))
    n_filler = rng.choice((0, 1, 1, 2, 2, 3)) if difficulty != "hard" else rng.choice((1, 2, 3))
    for filler in rng.sample(FILLER, n_filler):
        body.insert(rng.randint(0, len(body)), _fill(filler, rng))
    parts = [rng.choice(GREETINGS), " ".join(body), _fill(rng.choice(SIGNOFFS), rng)]
    return "\n".join(p for p in parts if p)


def _difficulty(rng: random.Random) -> str:
    x = rng.random()
    for name, weight in DIFFICULTY_WEIGHTS:
        if x < weight:
            return name
        x -= weight
    return DIFFICULTY_WEIGHTS[-1][0]


def build(seed: int = SEED) -> tuple[list[dict], list[dict], list[dict]]:
    """Return (train_rows, shuffled_rows, eval_rows)."""
    rng = random.Random(seed)
    seen: set[str] = set()

    def unique_ticket(label: str, difficulty: str, held_out_ok: bool) -> str:
        while True:
            text = make_ticket(label, difficulty, rng, held_out_ok=held_out_ok)
            if text not in seen:
                seen.add(text)
                return text

    train: list[tuple[str, str]] = []
    for label in LABELS:
        for _ in range(TRAIN_COUNTS[label]):
            train.append((unique_ticket(label, _difficulty(rng), False), label))
    rng.shuffle(train)

    evals: list[dict] = []
    for label in LABELS:
        for _ in range(EVAL_COUNTS[label]):
            difficulty = _difficulty(rng)
            evals.append({"prompt": unique_ticket(label, difficulty, True), "reference": label,
                          "tags": [label, difficulty]})
    rng.shuffle(evals)

    def vertex_row(ticket: str, label: str) -> dict:
        return {
            "systemInstruction": {"role": "system", "parts": [{"text": SYSTEM_INSTRUCTION}]},
            "contents": [
                {"role": "user", "parts": [{"text": ticket}]},
                {"role": "model", "parts": [{"text": label}]},
            ],
        }

    train_rows = [vertex_row(t, lab) for t, lab in train]
    shuffled_labels = [lab for _, lab in train]
    random.Random(seed + 1).shuffle(shuffled_labels)
    shuffled_rows = [vertex_row(t, lab) for (t, _), lab in zip(train, shuffled_labels)]
    return train_rows, shuffled_rows, evals


# The Gemini API tuning tutorial's "increment the number" examples, extended with the same pattern.
NUMBER_SEEDS = [
    ("1", "2"), ("3", "4"), ("-3", "-2"), ("twenty two", "twenty three"),
    ("two hundred", "two hundred one"), ("ninety nine", "one hundred"), ("8", "9"), ("-98", "-97"),
    ("1,000", "1,001"), ("10,100,000", "10,100,001"), ("thirteen", "fourteen"), ("eighty", "eighty one"),
    ("one", "two"), ("three", "four"), ("seven", "eight"),
    # extension (same pattern)
    ("41", "42"), ("-1", "0"), ("99", "100"), ("2,499", "2,500"), ("fifteen", "sixteen"),
    ("forty nine", "fifty"), ("six", "seven"), ("127", "128"), ("nine hundred ninety nine", "one thousand"),
]

README = """\
# Demo tuning data

Generated by `scripts/make_demo_data.py` (fixed seed, stdlib only; re-running it rewrites
byte-identical files). Task: route a customer-support ticket to one of six queues —
`billing`, `shipping`, `technical`, `account`, `refund`, `other`.

| File | What it is |
|---|---|
| `train.jsonl` | {n_train} training examples in Vertex AI supervised-tuning format (`systemInstruction` + \
one `user` turn with the ticket + one `model` turn with the label). |
| `train_shuffled.jsonl` | The same tickets with the labels randomly permuted — a corrupted dataset that should \
tune a worse model. |
| `eval_prompts.jsonl` | {n_eval} held-out tickets: `{{"prompt": <ticket text only>, "reference": <label>, \
"tags": [<label>, easy\\|hard\\|ambiguous]}}`. None is identical to a training ticket and some use phrasings \
never seen in training. |
| `system_instruction.txt` | The system instruction used in `train.jsonl`; send it with each eval prompt. |
| `seeds_numbers.jsonl` | The Gemini API tuning tutorial's "next number" examples \
(`{{"text_input": "1", "output": "2"}}`, ...), extended to {n_numbers} lines. |

Tickets are built from per-label templates, slot vocabulary and shared noise sentences.
`hard` tickets carry only weak label cues and `ambiguous` ones mention two topics (the label is
the first one), so a good model should score well but not perfectly.
"""


def write(out: Path, seed: int = SEED) -> None:
    out.mkdir(parents=True, exist_ok=True)
    train_rows, shuffled_rows, evals = build(seed)

    def dump(name: str, rows: list[dict]) -> None:
        with open(out / name, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    dump("train.jsonl", train_rows)
    dump("train_shuffled.jsonl", shuffled_rows)
    dump("eval_prompts.jsonl", evals)
    dump("seeds_numbers.jsonl", [{"text_input": a, "output": b} for a, b in NUMBER_SEEDS])
    (out / "system_instruction.txt").write_text(SYSTEM_INSTRUCTION + "\n", encoding="utf-8")
    (out / "README.md").write_text(
        README.format(n_train=len(train_rows), n_eval=len(evals), n_numbers=len(NUMBER_SEEDS)), encoding="utf-8"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = Path(__file__).resolve().parents[1] / "include" / "demo"
    parser.add_argument("--out", type=Path, default=default_out, help=f"output directory (default: {default_out})")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    write(args.out, args.seed)
    print(f"wrote demo data to {args.out}")


if __name__ == "__main__":
    main()
