"""Lab 05's task: turn a customer's message into a support ticket (a JSON document), with the truth known.

Every message is built from its ticket by a template, so each field of a reply can be scored against
the value the message really holds: a reply can be valid JSON that matches the schema and still be
wrong (constraints guarantee syntax, not truth).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ACTIONS = ("refund", "replace", "repair", "reply", "bug", "bug report", "escalate")


class Ticket(BaseModel):
    """What the support system needs from a message."""
    model_config = ConfigDict(extra="forbid")
    customer: str = Field(description="the customer's full name")
    order: int = Field(ge=10000, le=99999, description="the five-digit order number")
    action: Literal[ACTIONS] = Field(description="what the customer asks for")
    urgent: bool = Field(description="whether the customer says it is urgent")


SCHEMA = Ticket.model_json_schema()

NAMES = ["Maria Lopez", "Tom Becker", "Aiko Tanaka", "Sam Okafor", "Lena Novak", "Ravi Menon", "Ines Duarte",
         "Omar Haddad"]
ASKS = {   # action -> how a customer asks for it
    "refund": "I want my money back",
    "replace": "please send me a new one",
    "repair": "can you fix it for me",
    "reply": "I am still waiting for an answer to my last email",
    "bug": "the app crashes when I open my orders",
    "bug report": "I am filing a bug report: the checkout page shows the wrong total",
    "escalate": "I need to speak to a manager about this",
}
TEMPLATES = [
    "Hi, this is {name}. About order {order}: {ask}.{urgent}",
    "Order {order} -- {ask}.{urgent} Regards, {name}",
    "{name} here.{urgent} My order number is {order} and {ask}.",
    "Hello support, {ask}. The order was {order}. Thanks, {name}.{urgent}",
]
URGENT = " This is urgent!"
SYSTEM = ("You turn customer messages into support tickets. Reply with a JSON object only, with the keys "
          "customer (the full name, a string), order (the order number, an integer), action (one of "
          + ", ".join(f'"{a}"' for a in ACTIONS) + ") and urgent (true or false).")


@dataclass(frozen=True)
class Case:
    message: str
    truth: dict          # the ticket the message was written from


def cases(n: int = 32) -> list[Case]:
    """n messages with their tickets: every action, name and template, urgent or not, order numbers fixed."""
    out = []
    for i in range(n):
        action = ACTIONS[i % len(ACTIONS)]
        truth = {"customer": NAMES[(i * 3) % len(NAMES)], "order": 10007 + (i * 7919) % 89989,
                 "action": action, "urgent": i % 3 == 0}
        text = TEMPLATES[i % len(TEMPLATES)].format(name=truth["customer"], order=truth["order"], ask=ASKS[action],
                                                    urgent=URGENT if truth["urgent"] else "")
        out.append(Case(text, truth))
    return out


def messages(case: Case) -> list[dict]:
    """The chat the model answers for one case."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": case.message}]


def score(reply: str, case: Case, schema: dict = SCHEMA) -> dict:
    """One reply: does it parse, is it valid under the schema, and how many fields are right."""
    import jsonschema
    row = {"parses": False, "valid": False, "fields right": 0}
    try:
        doc = json.loads(reply)
    except json.JSONDecodeError:
        return row
    row["parses"] = True
    row["valid"] = jsonschema.Draft202012Validator(schema).is_valid(doc)
    if isinstance(doc, dict):
        # type() too: in Python True == 1, but a JSON 1 is not the boolean true
        row["fields right"] = sum(type(doc.get(key)) is type(value) and doc.get(key) == value
                                  for key, value in case.truth.items())
    return row
