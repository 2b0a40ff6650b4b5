#!/usr/bin/env python3
"""Generate the demo tuning data under ``include/demo/`` (deterministic, stdlib only).

Usage::

    python scripts/make_demo_data.py            # writes include/demo/* and include/demo/replies/*
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

A second, generative task lives in ``include/demo/replies/``: short (2-3 sentence)
customer-support replies for model-based evaluation (autorater, ROUGE-L); see
:func:`build_replies` and the README it writes.

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


# --------------------------------------------------------------------------------------------
# generative task: short customer-support replies (include/demo/replies/)
# --------------------------------------------------------------------------------------------
# The emulator's learner can only answer with a whole training output, so the replies are a
# moderate set of fixed texts (no per-message slot values inside a reply): every intent has two
# situations, every situation two paraphrased replies.  A message's situation decides which pair
# of replies fits; each paraphrase answers half of a situation's training messages and the eval
# reference is either one at random, so a well-tuned model returns the right situation's reply
# but not always the reference's wording.

REPLIES_SEED_OFFSET = 2  # the replies use their own random stream (seed + 2) so the router files never change
REPLY_SYSTEM_INSTRUCTION = (
    "You are a support agent. Reply to the customer in two or three short, polite sentences."
)
REPLY_INTENTS = ("order_status", "return_refund", "damaged_item", "account_access", "billing", "cancellation")
REPLY_TRAIN_PER_SITUATION = 22
REPLY_EVAL_TOTAL = 80
REPLY_HARD_SHARE = 0.4
# The last N message templates of every situation are held out of the training set ("hard" eval items).
REPLY_HELD_OUT_TEMPLATES = 2

# intent -> situation -> (two paraphrased replies, message templates; the last REPLY_HELD_OUT_TEMPLATES held out)
REPLY_SITUATIONS: dict[str, dict[str, tuple[tuple[str, str], tuple[str, ...]]]] = {
    "order_status": {
        "not_shipped": (
            ("Thanks for your patience. Your order is still being packed and will ship within two business days. "
             "You will get a tracking link by email.",
             "Thanks for checking in. Your order is still being prepared and should ship within two business days. "
             "We will email you a tracking link then."),
            ("I placed order {order} {date} and it still says 'processing'.",
             "My {product} hasn't shipped yet even though I ordered it {date}.",
             "When will order {order} actually ship?",
             "The status of my order has said 'preparing' for {n} days now.",
             "Why is my {product} still not dispatched?",
             "Is there any news on when my {product} will ship?",
             "My order from {date} is still waiting to be shipped.",
             # held out of training:
             "Has order {order} been dispatched yet? It still shows as processing.",
             "It's been {n} days and my {product} order still hasn't been sent out."),
        ),
        "delivered_missing": (
            ("I'm sorry your parcel shows as delivered but never arrived. I have opened a claim with the courier, "
             "and if it doesn't turn up in two days we will send a replacement.",
             "Sorry the parcel is marked delivered but you haven't received it. I have opened a courier claim, and "
             "if it is still missing in two days we will send a replacement."),
            ("The courier marked order {order} as delivered but nothing was at my door.",
             "Tracking says my {product} was delivered {date}, but I never got it.",
             "My package shows as delivered, yet it isn't anywhere at my address.",
             "I got a 'delivered' notification for the {product} but there was no parcel.",
             "The parcel was supposedly delivered {date} and I have nothing.",
             "The app says the parcel was delivered but I never received anything.",
             "The tracking says delivered {date} but the parcel is not here.",
             # held out of training:
             "Your courier claims the {product} was delivered, but no parcel ever arrived here.",
             "Order {order} is marked delivered and I still never received the package."),
        ),
    },
    "return_refund": {
        "how_to_return": (
            ("Thanks for reaching out. You can return any unused item within 30 days with the prepaid label on "
             "your order page. The refund follows within five days.",
             "Thank you for your message. Unused items can be returned within 30 days using the prepaid label on "
             "your order page, and we refund you within five days."),
            ("How do I return the {product}? It's not what I expected.",
             "I'd like to send back the {product} I bought {date}.",
             "Can I still return order {order}? I haven't used it.",
             "What's the process for returning an item for a refund?",
             "Is there a prepaid return label for the {product}?",
             "Can I return the {product} and get my money back?",
             "I want to send the {product} back, how does a return work?",
             # held out of training:
             "I want to return the unused {product}; what do I need to do?",
             "Please explain how returns work, I'd like to send order {order} back."),
        ),
        "refund_not_received": (
            ("I'm sorry your refund hasn't arrived yet. We have received your return, and the refund can take up "
             "to ten days to show on your statement.",
             "Sorry for the wait on your refund. Your return reached us, and it can take up to ten days for the "
             "refund to appear on your statement."),
            ("I returned the {product} {date} and still haven't got my refund.",
             "Where is my refund for order {order}? You confirmed the return weeks ago.",
             "My money hasn't come back even though you received the {product}.",
             "It's been {n} days since my return was accepted and no refund yet.",
             "The refund for my returned {product} is still missing.",
             "I'm still waiting for my refund for the {product} I returned.",
             "You got my return {date} but the refund hasn't arrived.",
             # held out of training:
             "You received my returned {product} {date}, so why is there still no refund on my card?",
             "Still waiting for the refund on order {order}, the return arrived ages ago."),
        ),
    },
    "damaged_item": {
        "arrived_broken": (
            ("I'm so sorry your item arrived damaged. Please reply with a photo of the damage and we will send a "
             "replacement right away.",
             "I'm really sorry the item reached you damaged. Send us a photo of the damage and we will ship a "
             "replacement straight away."),
            ("My {product} arrived with a cracked casing.",
             "The box was crushed and the {product} inside is broken.",
             "Order {order} came today and the {product} is smashed.",
             "The {product} was damaged in transit and doesn't work.",
             "My new {product} arrived broken.",
             "The {product} I received is broken and won't switch on.",
             "The {product} arrived damaged, the screen is cracked.",
             # held out of training:
             "When I unpacked the {product} it was already cracked and damaged.",
             "The {product} in order {order} is broken straight out of the box."),
        ),
        "wrong_item": (
            ("I'm sorry we sent you the wrong item. We will ship the correct one today and email you a prepaid "
             "label for returning the other one.",
             "Sorry for the mix-up with your order. The correct item ships today, and we are emailing you a "
             "prepaid label to send the wrong one back."),
            ("I ordered the {product} but received something completely different.",
             "Order {order} contained the wrong item.",
             "You sent me a {product} in the wrong colour and size.",
             "The parcel I got {date} has someone else's item in it.",
             "This isn't the {product} I ordered, it's a different product.",
             "I received the wrong item in my parcel.",
             "My order {order} arrived with a different item than I ordered.",
             # held out of training:
             "Instead of the {product} I ordered, the box had the wrong item in it.",
             "Wrong product delivered for order {order}, it's not what I bought."),
        ),
    },
    "account_access": {
        "forgot_password": (
            ("Sorry for the trouble signing in. I have sent a new password reset link to your account email, valid "
             "for one hour. Please check your spam folder too.",
             "Sorry you're having trouble logging in. A fresh password reset link is on its way to your account "
             "email and is valid for one hour, so please check spam too."),
            ("I forgot my password and can't log in.",
             "The password reset email never arrives.",
             "I can't remember my password for the account under {name}.",
             "The reset link you sent me {date} has already expired.",
             "I'm locked out because I lost my password.",
             "I need a password reset, the email with the link never came.",
             "I can't sign in because I forgot my password.",
             # held out of training:
             "Can you help me reset my password? I can't sign in on my {device}.",
             "I requested a password reset twice but no email came through."),
        ),
        "change_email": (
            ("Thanks for letting us know. You can change your email address under Settings, then Account, and we "
             "will send a confirmation link to the new address.",
             "Thank you for reaching out. Your email address can be updated under Settings, then Account, and a "
             "confirmation link will go to the new address."),
            ("Please change the email address on my account.",
             "I have a new work email and want to use it for my {plan}.",
             "How do I update the email linked to my profile?",
             "My old email address no longer works, can you switch it?",
             "I'd like to use a different email for my account.",
             "Please update my login email to a new address.",
             "How can I change the email address I use to log in?",
             # held out of training:
             "Could you replace the email on my profile with my new address?",
             "I need my account moved to a new email address, the old one is closed."),
        ),
    },
    "billing": {
        "double_charge": (
            ("I'm sorry you were charged twice. I have refunded the duplicate payment, and it should appear on "
             "your statement within five business days.",
             "Sorry about the double charge. The duplicate payment has been refunded and will show on your "
             "statement within five business days."),
            ("I was charged twice for my {plan} this month.",
             "There are two identical payments for order {order} on my card.",
             "My card was billed twice {date}.",
             "You took the subscription fee for my {plan} two times.",
             "I see a duplicate charge from you on my statement.",
             "My bank shows the same charge twice for one order.",
             "I've been charged twice for the same order.",
             # held out of training:
             "The same payment for order {order} was charged twice to my card.",
             "Why was I billed twice for the {plan}? There's a duplicate charge."),
        ),
        "invoice_request": (
            ("Thanks for reaching out. You can download every invoice from the Billing page of your account, and I "
             "have also emailed you a copy.",
             "Thank you for your message. All invoices can be downloaded from the Billing page of your account, "
             "and a copy is on its way to your email."),
            ("Can you send me an invoice for order {order}?",
             "I need a VAT invoice for my {plan} for my company's accounts.",
             "Where can I find the receipt for my purchase from {date}?",
             "My accountant needs invoices for the last three months.",
             "Please email me a copy of my latest invoice.",
             "Can I get an invoice for my last payment?",
             "I need an invoice for order {order} for my records.",
             # held out of training:
             "Could I get an invoice for the {product} for my expense report?",
             "I can't find the invoice for my {plan} payment, where is it?"),
        ),
    },
    "cancellation": {
        "cancel_order": (
            ("No problem, I have cancelled your order before it shipped. The full amount goes back to your "
             "original payment method within three business days.",
             "Of course, your order has been cancelled before shipping. The full amount will be returned to your "
             "original payment method within three business days."),
            ("Please cancel order {order}, I ordered by mistake.",
             "I'd like to cancel the {product} I bought {date}.",
             "Can I still cancel my order? It hasn't shipped yet.",
             "I changed my mind about order {order}, please cancel it.",
             "Cancel my {product} order please.",
             "Please cancel the order I just placed.",
             "I ordered the {product} by accident, please cancel it.",
             # held out of training:
             "I no longer need the {product}, can you cancel the order before it ships?",
             "Is it too late to cancel the order I placed {date}?"),
        ),
        "cancel_subscription": (
            ("Sorry to see you go. I have cancelled your subscription, and you keep access until the end of the "
             "current billing period with no further charges.",
             "We're sorry to see you leave. Your subscription is cancelled, and you keep access until the end of "
             "this billing period without being charged again."),
            ("Please cancel my {plan}.",
             "I want to stop my subscription before the next renewal.",
             "How do I end my {plan}? I don't use it anymore.",
             "Don't renew my membership next month, please.",
             "Cancel my subscription, I'm moving to another service.",
             "I want to cancel my subscription and not be charged again.",
             "Please cancel my subscription at the end of this month.",
             # held out of training:
             "I'd like to cancel the {plan} and stop future renewals.",
             "Please end my subscription so I'm not charged next month."),
        ),
    },
}

REPLY_FILLER = (
    "I've been a customer for {years} years.",
    "Thanks in advance for your help.",
    "I'm writing from my phone, so sorry for any typos.",
    "Hope you're having a good day.",
    "Please get back to me as soon as possible.",
    "My name is {name}.",
    "I usually love your service.",
    "Let me know if you need anything else from me.",
    "This is the first time I've had a problem.",
    "I'm a bit frustrated, to be honest.",
)


def _reply_situations() -> list[tuple[str, str]]:
    return [(intent, sit) for intent in REPLY_INTENTS for sit in REPLY_SITUATIONS[intent]]


def make_message(intent: str, situation: str, rng: random.Random, *, held_out: bool) -> str:
    """A customer message of ``situation``: a seen template (``held_out`` False) or a held-out one."""
    templates = REPLY_SITUATIONS[intent][situation][1]
    pool = templates[-REPLY_HELD_OUT_TEMPLATES:] if held_out else templates[:-REPLY_HELD_OUT_TEMPLATES]
    body = [_fill(rng.choice(pool), rng)]
    for filler in rng.sample(REPLY_FILLER, rng.choice((0, 0, 1))):
        body.insert(rng.randint(0, len(body)), _fill(filler, rng))
    parts = [rng.choice(GREETINGS), " ".join(body), _fill(rng.choice(SIGNOFFS), rng)]
    return "\n".join(p for p in parts if p)


def build_replies(seed: int = SEED) -> tuple[list[dict], list[dict], list[dict]]:
    """Return (train_rows, corrupted_rows, eval_rows) of the support-reply task."""
    rng = random.Random(seed + REPLIES_SEED_OFFSET)
    situations = _reply_situations()
    seen: set[str] = set()

    def unique_message(intent: str, situation: str, held_out: bool) -> str:
        while True:
            text = make_message(intent, situation, rng, held_out=held_out)
            if text not in seen:
                seen.add(text)
                return text

    train: list[tuple[str, str, str]] = []  # (message, reply, intent)
    for intent, sit in situations:
        replies = REPLY_SITUATIONS[intent][sit][0]
        for j in range(REPLY_TRAIN_PER_SITUATION):  # both paraphrases equally often
            train.append((unique_message(intent, sit, False), replies[j % 2], intent))
    rng.shuffle(train)

    evals: list[dict] = []
    base, extra = divmod(REPLY_EVAL_TOTAL, len(situations))
    for k, (intent, sit) in enumerate(situations):
        count = base + (k < extra)
        n_hard = round(count * REPLY_HARD_SHARE)
        for j in range(count):
            difficulty = "hard" if j < n_hard else "easy"
            evals.append({"prompt": unique_message(intent, sit, difficulty == "hard"),
                          "reference": rng.choice(REPLY_SITUATIONS[intent][sit][0]),
                          "tags": [intent, difficulty], "metric": "rouge_l_f1"})
    rng.shuffle(evals)

    # corrupted: the same messages with the replies permuted so that no message keeps a reply of its own intent
    order = list(range(len(train)))
    rng.shuffle(order)
    for i in range(len(order)):
        if train[order[i]][2] != train[i][2]:
            continue
        start = rng.randrange(len(order))
        for step in range(len(order)):
            j = (start + step) % len(order)
            if train[order[j]][2] != train[i][2] and train[order[i]][2] != train[j][2]:
                order[i], order[j] = order[j], order[i]
                break

    def vertex_row(message: str, reply: str) -> dict:
        return {
            "systemInstruction": {"role": "system", "parts": [{"text": REPLY_SYSTEM_INSTRUCTION}]},
            "contents": [
                {"role": "user", "parts": [{"text": message}]},
                {"role": "model", "parts": [{"text": reply}]},
            ],
        }

    train_rows = [vertex_row(m, r) for m, r, _ in train]
    corrupted_rows = [vertex_row(m, train[j][1]) for (m, _, _), j in zip(train, order)]
    return train_rows, corrupted_rows, evals


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

REPLIES_README = """
## Generative task: short support replies (`replies/`)

For model-based evaluation (an autorater judging an answer against a reference) and ROUGE-L: reply to
a customer message in two or three short, polite sentences. {n_intents} intents:
{intents}. Each has two situations (e.g. `order_status`: not shipped yet / marked as delivered but
missing), so {n_situations} situations, each with **two paraphrased replies**: {n_replies} distinct reply
texts in all. Replies never contain per-message slot values (order numbers, products...): the
emulator's learner can only answer with a whole training output, so a tuned model can really return
the right reply for a new message.

| File | What it is |
|---|---|
| `replies/train.jsonl` | {n_train} examples, Vertex AI supervised-tuning format (same shape as `train.jsonl`); the \
reply is one of the message's two situation paraphrases (each for half of a situation's messages). |
| `replies/train_corrupted.jsonl` | The same messages with the replies permuted so that no message keeps a reply of \
its own intent — a corrupted set that must lose. |
| `replies/eval_prompts.jsonl` | {n_eval} held-out messages: `{{"prompt", "reference": <one of the situation's two \
replies>, "tags": [<intent>, easy\\|hard], "metric": "rouge_l_f1"}}`. None is identical to a training message; \
`hard` ones ({n_hard}) use message templates never seen in training. |
| `replies/system_instruction.txt` | The system instruction used in `replies/train.jsonl`; send it with each eval \
prompt. |

Because the reference is one of two paraphrases (ROUGE-L F1 between them about 0.6, between replies of
different situations about 0.18), a good tuned answer is close to it but not always identical: ROUGE-L
F1 and an autorater rate it high, exact match holds only about half the time. Measured with the
emulator's learner (default hyperparameters, 3 epochs): mean ROUGE-L F1 0.72 tuned on `train.jsonl`
(exact match 0.46), 0.23 on `train_corrupted.jsonl`, 0.13 for the untuned base model. The replies use their own random
stream (seed + 2), so adding them left the ticket-router files unchanged.
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

    reply_train, reply_corrupted, reply_evals = build_replies(seed)
    replies = out / "replies"
    replies.mkdir(exist_ok=True)
    dump("replies/train.jsonl", reply_train)
    dump("replies/train_corrupted.jsonl", reply_corrupted)
    dump("replies/eval_prompts.jsonl", reply_evals)
    (replies / "system_instruction.txt").write_text(REPLY_SYSTEM_INSTRUCTION + "\n", encoding="utf-8")

    n_replies = len({row["contents"][1]["parts"][0]["text"] for row in reply_train})
    (out / "README.md").write_text(
        README.format(n_train=len(train_rows), n_eval=len(evals), n_numbers=len(NUMBER_SEEDS))
        + REPLIES_README.format(n_train=len(reply_train), n_eval=len(reply_evals), n_replies=n_replies,
                                n_situations=len(_reply_situations()), n_intents=len(REPLY_INTENTS),
                                n_hard=sum(r["tags"][1] == "hard" for r in reply_evals),
                                intents=", ".join(f"`{i}`" for i in REPLY_INTENTS)),
        encoding="utf-8",
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
