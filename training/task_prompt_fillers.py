"""Slot fillers for the simulated task prompts: topics, code, documents, numbers.

Documents are shared by the summarization and extraction templates (and code snippets by
several code templates) so the classifier has to read the instruction, not the payload.
"""

from __future__ import annotations

import random

TOPICS: tuple[str, ...] = (
    "photosynthesis",
    "the French Revolution",
    "black holes",
    "inflation",
    "the immune system",
    "plate tectonics",
    "the Roman Empire",
    "blockchain",
    "quantum entanglement",
    "the Renaissance",
    "climate change",
    "the Silk Road",
    "DNA replication",
    "the Cold War",
    "supply and demand",
    "vaccines",
    "the water cycle",
    "Impressionism",
    "antibiotic resistance",
    "general relativity",
    "monsoons",
    "the printing press",
    "the stock market",
    "the Magna Carta",
    "nuclear fusion",
    "the human heart",
    "coral reefs",
    "the Industrial Revolution",
    "the Ming dynasty",
    "volcanoes",
    "the electoral college",
    "machine learning",
    "the Great Depression",
    "jazz",
    "the Hubble telescope",
    "central banks",
    "the Reformation",
    "tides",
    "the nitrogen cycle",
    "the Mughal Empire",
    "semiconductors",
    "the placebo effect",
    "the Treaty of Versailles",
    "El Niño",
    "stem cells",
)
PEOPLE: tuple[str, ...] = (
    "Marie Curie",
    "Napoleon Bonaparte",
    "Ada Lovelace",
    "Nelson Mandela",
    "Isaac Newton",
    "Frida Kahlo",
    "Genghis Khan",
    "Alan Turing",
    "Cleopatra",
    "Confucius",
    "Simón Bolívar",
    "Rosalind Franklin",
    "Mansa Musa",
    "Leonardo da Vinci",
    "Harriet Tubman",
    "Srinivasa Ramanujan",
)
COUNTRIES: tuple[str, ...] = (
    "Kenya",
    "Peru",
    "Vietnam",
    "Norway",
    "Morocco",
    "New Zealand",
    "Chile",
    "Poland",
    "Indonesia",
    "Canada",
    "Ghana",
    "Portugal",
    "Mongolia",
    "Uruguay",
    "Finland",
    "Egypt",
)
COMPANIES: tuple[str, ...] = (
    "Northwind Logistics",
    "Acme Robotics",
    "Bluefin Health",
    "Orbital Foods",
    "Kestrel Bank",
    "Helios Energy",
    "Tandem Retail",
    "Quarry Labs",
    "Lumen Telecom",
    "Juniper Mills",
)
NAMES: tuple[str, ...] = (
    "Priya Nair",
    "Tom Becker",
    "Ana Souza",
    "Kenji Watanabe",
    "Fatima Zahra",
    "Liam O'Connor",
    "Mei Chen",
    "Carlos Ruiz",
    "Olga Ivanova",
    "David Okafor",
    "Sara Lindqvist",
    "Omar Haddad",
)
CITIES: tuple[str, ...] = (
    "Lisbon",
    "Nairobi",
    "Osaka",
    "Denver",
    "Krakow",
    "Monterrey",
    "Pune",
    "Leeds",
    "Adelaide",
    "Quito",
)
LANGUAGES: tuple[str, ...] = (
    "Python",
    "JavaScript",
    "TypeScript",
    "Go",
    "Rust",
    "Java",
    "C++",
    "C#",
    "Ruby",
    "Kotlin",
    "Swift",
    "PHP",
    "Bash",
    "Scala",
)
CODE_GOALS: tuple[str, ...] = (
    "reverses a linked list",
    "parses a CSV file to total one column",
    "debounces another function",
    "validates an email address",
    "finds the longest common prefix of a list of strings",
    "merges two sorted arrays",
    "retries an HTTP request with exponential backoff",
    "computes a moving average over a stream",
    "implements an LRU cache",
    "flattens a nested dictionary",
    "checks whether a string is a palindrome",
    "counts word frequencies in a file",
    "rate-limits calls with a token bucket",
    "serialises a binary tree to a string and back",
    "finds duplicate files in a directory",
    "converts Roman numerals to integers",
    "paginates results from a REST API",
    "detects a cycle in a directed graph",
)
HUMAN_TOPICS: tuple[str, ...] = (
    "a lighthouse keeper",
    "autumn in the city",
    "a lost cat",
    "the first day of school",
    "the ocean",
    "a robot learning to paint",
    "friendship",
    "a rainy Monday",
    "a dragon who is afraid of heights",
    "coffee",
    "a long train journey",
    "moving to a new country",
    "the last bookstore on earth",
    "time",
)
PRODUCTS: tuple[str, ...] = (
    "a reusable water bottle",
    "a budgeting app",
    "an electric bike",
    "a vegan bakery",
    "a noise-cancelling headset",
    "a language-learning podcast",
    "a smart thermostat",
    "a hiking boot",
)

_ERRORS = (
    ("KeyError", "'user_id'"),
    ("TypeError", "unsupported operand type(s) for +: 'int' and 'str'"),
    ("AttributeError", "'NoneType' object has no attribute 'split'"),
    ("IndexError", "list index out of range"),
    ("ValueError", "invalid literal for int() with base 10: 'abc'"),
    ("ModuleNotFoundError", "No module named 'requests'"),
    ("ZeroDivisionError", "division by zero"),
)
_SNIPPETS = (
    "def average(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
    "for (let i = 0; i <= items.length; i++) {\n  console.log(items[i].name);\n}\n",
    "SELECT customer_id, COUNT(*)\nFROM orders\nWHERE created_at > '2024-01-01'\nGROUP BY customer_id\nHAVING total > 10;\n",
    'func handler(w http.ResponseWriter, r *http.Request) {\n    body, _ := io.ReadAll(r.Body)\n    fmt.Fprintf(w, "%s", body)\n}\n',
    'fn main() {\n    let v = vec![1, 2, 3];\n    let first = &v[0];\n    v.push(4);\n    println!("{}", first);\n}\n',
    "public int sum(List<Integer> xs) {\n    int s = 0;\n    for (Integer x : xs) s += x;\n    return s;\n}\n",
    "const res = await fetch(url);\nconst data = res.json();\nsetItems(data.items);\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n    def pop(self):\n        return self.items.pop(0)\n",
    '#include <stdio.h>\nint main() {\n    char buf[8];\n    gets(buf);\n    printf("%s", buf);\n}\n',
    "df = pd.read_csv('sales.csv')\ndf['month'] = df['date'].dt.month\nprint(df.groupby('month').sum())\n",
    "#!/bin/bash\nfor f in $(ls *.log); do\n  grep ERROR $f | wc -l\ndone\n",
    "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx\n",
)


def pick(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[rng.randrange(len(options))]


def traceback_text(rng: random.Random) -> str:
    error, message = _ERRORS[rng.randrange(len(_ERRORS))]
    module = pick(rng, ("app", "main", "views", "worker", "utils", "pipeline"))
    func = pick(rng, ("load_user", "handle", "process_row", "run", "parse_config", "compute"))
    lines = ["Traceback (most recent call last):"]
    for depth in range(rng.randint(1, 3)):
        lines.append(f'  File "/srv/{module}/{module}_{depth}.py", line {rng.randint(3, 400)}, in {func}')
        lines.append(f"    result = {func}(data[{rng.randint(0, 9)}])")
    lines.append(f"{error}: {message}")
    return "\n".join(lines)


def code_snippet(rng: random.Random) -> str:
    snippet = pick(rng, _SNIPPETS)
    return f"```\n{snippet}```" if rng.random() < 0.5 else snippet


def number(rng: random.Random, low: int = 2, high: int = 99) -> str:
    return str(rng.randint(low, high))


_DOC_SENTENCES: dict[str, tuple[str, ...]] = {
    "news article": (
        "{company} announced on {date} that it will open a new facility in {city}.",
        "The move is expected to create about {n} jobs over the next {m} years.",
        "Chief executive {name} said the decision followed a year of record demand.",
        "Analysts estimate the investment at roughly ${n} million.",
        "Local officials welcomed the plan but raised concerns about traffic and housing.",
        "Shares of {company} rose {m} percent in early trading.",
        "The company had previously closed two smaller sites in {city2}.",
        "Construction is scheduled to begin in {month}.",
    ),
    "meeting notes": (
        "Attendees: {name}, {name2}, {name3}.",
        "{name} reported that the Q{q} launch slipped by {m} weeks because of vendor delays.",
        "The team agreed to move the design review to {date}.",
        "{name2} will draft the budget proposal (${n}k) by Friday.",
        "Open question: whether to hire a contractor in {city} or train internal staff.",
        "Decision: the pilot continues with {n} customers.",
        "{name3} raised a risk about data retention in the {city} office.",
        "Next meeting: {date}.",
    ),
    "email thread": (
        "Hi {name2}, following up on the invoice #{n} that was due on {date}.",
        "We have not yet received payment of ${n}.{m}0 for the {month} services.",
        "Could you confirm the new billing address in {city}?",
        "Reply from {name2}: apologies, the payment was delayed by our bank.",
        "We will transfer the amount by {date} and update the contact to {name3}.",
        "Thanks, {name} (Accounts, {company})",
    ),
    "product review": (
        "I bought this from {company} in {month} and have used it daily since.",
        "Battery life is around {m} hours, less than the advertised {n}.",
        "Setup took about {m} minutes and the app is easy to use.",
        "Customer support in {city} replaced a faulty charger within a week.",
        "For ${n} it is decent value, but the build quality feels cheap.",
        "Overall I would give it {q} out of 5 stars.",
    ),
    "research abstract": (
        "We study the effect of sleep duration on memory consolidation in {n} adults.",
        "Participants in {city} were randomly assigned to {m} groups for {q} weeks.",
        "Recall improved by {m}% in the extended-sleep group (p < 0.05).",
        "The effect was strongest for participants over {n} years old.",
        "These results suggest that modest changes in sleep can affect learning.",
        "Limitations include self-reported sleep and a short follow-up period.",
    ),
    "support ticket": (
        "Customer {name} (account {n}{m}) reports that exports fail since the {month} update.",
        "Error shown: 'timeout after {m} seconds' when exporting more than {n} rows.",
        "The customer is on the Enterprise plan, billed ${n}0 per month, based in {city}.",
        "Workaround suggested by {name2}: export in smaller batches.",
        "Priority: high. Assigned to {name3}. Reported on {date}.",
    ),
    "job posting": (
        "{company} is hiring a senior data engineer in {city}.",
        "Salary range: ${n}k to ${m}0k plus equity.",
        "Requirements: {q}+ years of experience with Python, SQL and cloud data warehouses.",
        "The role reports to {name}, head of analytics.",
        "Applications close on {date}; contact {name2} with questions.",
    ),
}
_MONTHS = ("January", "March", "April", "June", "August", "September", "October", "December")


def document(rng: random.Random) -> tuple[str, str]:
    """(kind, text): a short synthetic document made of slot-filled sentences."""
    kind = pick(rng, tuple(_DOC_SENTENCES))
    sentences = list(_DOC_SENTENCES[kind])
    chosen = sorted(rng.sample(range(len(sentences)), k=rng.randint(3, len(sentences))))
    names = rng.sample(NAMES, 3)
    cities = rng.sample(CITIES, 2)
    slots = {
        "company": pick(rng, COMPANIES),
        "city": cities[0],
        "city2": cities[1],
        "name": names[0],
        "name2": names[1],
        "name3": names[2],
        "date": f"{pick(rng, _MONTHS)} {rng.randint(1, 28)}",
        "month": pick(rng, _MONTHS),
        "n": number(rng, 10, 900),
        "m": number(rng, 2, 40),
        "q": number(rng, 1, 4),
    }
    return kind, " ".join(sentences[i].format(**slots) for i in chosen)
