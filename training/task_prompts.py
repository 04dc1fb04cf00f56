"""Simulated task prompts: many templates per task type, slot fillers, and noise.

Each template is its own group (``sim:<task>:<index>``) so a grouped split holds out whole
templates. Some templates are deliberately ambiguous (a poem about integrals is creative,
a bug in a maths function is code); the label is the one a router should act on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from training.task_corpus import LabelledPrompt
from training.task_prompt_fillers import (
    CODE_GOALS,
    COMPANIES,
    COUNTRIES,
    HUMAN_TOPICS,
    LANGUAGES,
    PEOPLE,
    PRODUCTS,
    TOPICS,
    code_snippet,
    document,
    number,
    pick,
    traceback_text,
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "chat": (
        "hi",
        "hello there!",
        "Good morning! How are you today?",
        "hey, what's up?",
        "thanks, that helped a lot",
        "ok cool. and what do you think about {human_topic}?",
        "I'm feeling a bit stressed about work lately, any advice?",
        "Can you recommend a good book for a long flight?",
        "are you an AI or a real person?",
        "What can you help me with?",
        "I'm bored, let's just talk for a bit",
        "What should I cook tonight? I have eggs, rice and some spinach.",
        "Translate 'where is the train station' into {lang_h}.",
        "lol that's funny. tell me something interesting",
        "My friend forgot my birthday. Should I say something?",
        "Do you like {human_topic}?",
        "good night, talk tomorrow",
        "Can you help me with something?",
        "Hola, ¿cómo estás? ¿Me puedes ayudar?",
        "Bonjour ! Tu peux m'aider à choisir un cadeau ?",
        "What's a fun thing to do this weekend in {city}?",
        "I just got a new puppy!! any tips for the first week?",
        "sorry, I meant the other one",
        "Tell me a little about yourself.",
        "Do you remember what we talked about yesterday?",
        "haha ok. what are you up to?",
        "I had such a long day. My boss {name} kept changing the plan.",
        "Can we chat about {human_topic}?",
        "What's your favourite movie?",
        "Guten Tag! Wie geht es dir?",
        "i need someone to talk to tonight",
        "thank you so much, you're the best",
        "Any tips for sleeping better? I keep waking up at 3am.",
        "What gift should I get my mom, she likes gardening and {human_topic}?",
        "Would you rather live by the sea or in the mountains?",
        "Never mind, forget it.",
        "Can you say that again but friendlier?",
        "How do I politely decline a party invitation from {name}?",
    ),
    "code": (
        "Write a {lang} function that {goal}.",
        "How do I fix this error?\n\n{traceback}",
        "{traceback}\n\nwhat does this mean",
        "Why does this code not work?\n\n{snippet}",
        "Refactor this to be more idiomatic {lang}:\n{snippet}",
        "Can you add unit tests for this?\n{snippet}",
        "Explain what this code does line by line:\n{snippet}",
        "Write a SQL query that returns the top {k} customers by revenue per month.",
        "Implement a class in {lang} that {goal}, with type hints and docstrings.",
        "I'm getting a segfault in my C++ program when I resize a vector inside a loop over it. Why?",
        "Write a regex that matches ISO 8601 dates.",
        "convert this {lang} code to {lang2}\n{snippet}",
        "How can I make this faster? It takes {n} seconds on {n}k rows.\n{snippet}",
        "what's the difference between a process and a thread in {lang}",
        "Write a bash one-liner to find the {k} largest files under /var.",
        "My unit test fails with `AssertionError: expected {n} got {m}`. Here is the code:\n{snippet}",
        "Review this pull request diff and point out bugs:\n{snippet}",
        "Write a Dockerfile for a {lang} web service.",
        "Implement binary search in {lang} without recursion.",
        "How do I mock an HTTP call in pytest?",
        "This {lang} function should be O(n) but it's quadratic, why?\n{snippet}",
        "Fix the bug in my function that computes the mean of a list:\n{snippet}",
        "npm install fails with ERESOLVE unable to resolve dependency tree, how do I fix it?",
        "Write a function to {goal_inf}.",
        "write a python function to {goal_inf}",
        "Write a program to {goal_inf}.",
        "Can you write code to {goal_inf}?",
        "Give me a {lang} snippet to {goal_inf}.",
        "Create a command-line script that {goal}.",
        "Implement {goal_inf} in {lang}, handling edge cases.",
        "I need a helper that can {goal_inf}. Use {lang} please.",
    ),
    "summarization": (
        "Summarize the following {doc_kind}:\n\n{doc}",
        "{doc}\n\nTL;DR?",
        "Give me the key points of this {doc_kind} in {k} bullets:\n{doc}",
        "Can you condense this into one short paragraph?\n\n{doc}",
        "What's the gist of this?\n{doc}",
        "Write an executive summary of the {doc_kind} below.\n\n{doc}",
        "{doc}\n\nSummarize the above in {k} sentences.",
        "Boil this down for a busy manager: {doc}",
        "Shorten this to under {n} words without losing the main points:\n{doc}",
        "Please recap this {doc_kind} for someone who missed it.\n---\n{doc}\n---",
        "summarise pls\n\n{doc}",
        "Here is a {doc_kind}. I need a one-line summary for a status report.\n{doc}",
        "{doc}\n\nIn a nutshell, what is this saying?",
        "Write a brief abstract of the following text:\n{doc}",
        "Create a short overview of the main takeaways:\n\n{doc}",
        "Give me a three-sentence synopsis of this:\n{doc}",
        "Summarize the book '{human_topic}' chapter by chapter in a few lines each.",
        "Summarize the plot of Hamlet in one paragraph.",
        "Could you sum up the main arguments in this {doc_kind}?\n{doc}",
    ),
    "extraction": (
        "Extract all the names, dates and amounts from the following {doc_kind}:\n\n{doc}",
        "From this {doc_kind}, pull out the company, city and any dollar amounts. Return JSON.\n{doc}",
        'Return a JSON object with keys "people", "organizations" and "dates" for this text:\n{doc}',
        "{doc}\n\nList every date mentioned above, one per line.",
        "Parse the text below into a table with columns name | role | city.\n{doc}",
        "Identify the people and organizations mentioned in: {doc}",
        "What is the total amount in this {doc_kind}? Answer with the number only.\n{doc}",
        "Convert the following into CSV with the columns date,amount,counterparty:\n{doc}",
        "Label the sentiment of this review as positive, negative or neutral and give the star rating as an integer.\n{doc}",
        "Find all email addresses and phone numbers in this text and output them as a list:\n{doc}",
        "Fill in this form from the {doc_kind}: Name:, Date:, Amount:, Location:\n\n{doc}",
        "{doc}\n\nExtract the action items and their owners as JSON.",
        "Pull out the key entities (NER) from this passage:\n{doc}",
        "Get me just the numbers from this {doc_kind}, nothing else:\n{doc}",
        "Which city is mentioned in the following text? Reply with only the city.\n{doc}",
        "Turn this {doc_kind} into structured data (YAML) with the fields you can find:\n{doc}",
        "Classify each sentence of this {doc_kind} as fact or opinion:\n{doc}",
        "extract the deadline and the owner from this:\n{doc}",
        "Given this {doc_kind}, output a JSON list of objects with name and amount.\n{doc}",
        "Identify all the {entities} in the given text and output them as a JSON dictionary.\n{doc}",
        "Read the passage below and list the {entities} it mentions, one per line:\n{doc}",
        "Extract key-value pairs from the following {doc_kind} and output them as a markdown table:\n{doc}",
        "Scan this {doc_kind} and return only the {entities}, comma-separated.\n\n{doc}",
        "{doc}\n\nFrom the text above, what {entities} are mentioned? Output JSON only.",
    ),
    "reasoning": (
        "Alice is taller than Bob, Bob is taller than Carol, and Dan is shorter than Carol. Who is the second tallest? Explain.",
        "If all bloops are razzies and some razzies are lazzies, are some bloops definitely lazzies? Think it through.",
        "A knight always tells the truth and a knave always lies. A says 'B is a knave'. B says 'we are both knights'. Who is what?",
        "I have a budget of ${n}k and need to choose between {product} and {product2} for my team. Walk me through the trade-offs.",
        "Plan a {k}-day itinerary in {country} for a family with a toddler, minimising travel time between stops.",
        "We have {k} meetings and 3 rooms; meeting A can't overlap B, and C must be before A. Find a valid schedule.",
        "What is wrong with this argument: 'Every time I wash my car it rains, so washing my car causes rain'?",
        "Should a startup with {k} engineers build its own auth service or buy one? Reason step by step.",
        "Three boxes are labelled apples, oranges and mixed, and all labels are wrong. You may pick one fruit from one box. How do you relabel them?",
        "Think step by step: if the meeting moves to Thursday, which of the dependent tasks slip, given the plan below?\n{doc}",
        "Compare the pros and cons of remote work versus office work for a team of {n} people and recommend one.",
        "A farmer must cross a river with a wolf, a goat and a cabbage. The boat fits one item. How does he do it?",
        "Which option minimises risk: migrating the database now or after the {k}-week freeze? Lay out your reasoning.",
        "If it takes 5 machines 5 minutes to make 5 widgets, what's wrong with answering 100 minutes for 100 machines? Explain the logic.",
        "Rank these four projects by expected value and justify the order: a {k}% chance of $1M, a sure $200k, ...",
        "Why might a policy that raises {topic}-related costs backfire? Analyse second-order effects.",
        "There are five houses in a row with different colours; the green house is left of the white one... who owns the fish?",
        "Given that every manager attends the Monday call and Priya did not attend, what can we conclude? Be rigorous.",
        "Design a fair rota for {k} people covering 7 days, where nobody works two weekends in a row.",
        "Is the following reasoning valid? Premise 1: no reptiles have fur. Premise 2: all snakes are reptiles. Conclusion: no snakes have fur.",
        "what would happen if the moon disappeared? think it through carefully, step by step",
        "Evaluate the decision to expand {company} into {country}: consider costs, risks and alternatives before concluding.",
        "{name}, {name2} and {name3} each own a different pet: a cat, a dog and a parrot. {name} is allergic to fur and {name2} does not own the dog. Who owns which pet?",
        "If {name} is older than {name2} and {name2} is older than {name3}, who is the youngest? Explain your reasoning.",
        "Only one of them tells the truth. {name} says {name2} broke the vase. {name2} says {name3} did it. {name3} says {name2} is lying. Who broke it?",
        "I can take a job in {city} paying ${n}k or stay in my current role with a {k}% raise. Help me think through the decision logically.",
        "What hidden assumptions does this claim rely on: '{claim}'?",
        "Is this conclusion justified? '{claim}' Explain why or why not.",
        "Sales dropped {k}% right after we cut prices. List plausible explanations, rank them, and say how to test each one.",
        "Estimate how many piano tuners work in {city}. Show your reasoning as a Fermi estimate.",
        "What comes next in the pattern A, C, F, J, O, ...? Explain the rule you found.",
        "Our web app is slow only on Mondays between 9 and 10 am. What are the most likely causes, from most to least likely, and why?",
        "Which must be true if no poets are engineers and every {thing} is an engineer? Justify the answer.",
        "You have two ropes that each take one hour to burn, unevenly. How can you measure 45 minutes? Explain.",
        "Given these constraints: {name} can't work Tuesdays, {name2} must work with {name3}, and only two people per shift. Who works Monday and Tuesday?",
        "Weigh the evidence: candidate 1 has more experience but weaker references, candidate 2 the opposite. Whom should we hire for a {k}-person team?",
        "A clock shows 3:15. What is the angle between the hands? Reason carefully, it's a classic trick.",
        "Riddle: the more you take, the more you leave behind. What am I? Explain the logic.",
        "Should {company} raise prices or cut costs to reach profitability next year? Build the argument for each and decide.",
        "Identify the logical fallacy: '{claim}'",
        "Read the situation below and decide which conclusion follows logically. Explain each step.\n{doc}",
        "{name} always lies on Mondays and tells the truth otherwise. Today {name} said 'I lied yesterday.' What day is it? Explain.",
        "If the statement 'every {thing} in the club is left-handed' is false, what exactly do we know? Reason it out.",
    ),
    "creative": (
        "Write a poem about {human_topic}.",
        "Write a short story about {human_topic} with a twist ending.",
        "Compose a haiku about {human_topic}.",
        "Write song lyrics about {human_topic} in the style of a folk ballad.",
        "Come up with {k} catchy slogans for {product}.",
        "Write a limerick about a cat who learns {lang}.",
        "Draft a wedding toast for my best friend {name}, funny but heartfelt.",
        "Write a product description for {product} that sounds luxurious.",
        "Pretend you are a pirate captain and describe your ship to a new recruit.",
        "Imagine a world where {topic} never happened. Write a scene set there.",
        "Write a dialogue between {person} and a modern teenager.",
        "Rewrite this sentence as Shakespeare would: 'I forgot my keys again.'",
        "Compose an engaging travel blog post about a recent trip to {country}.",
        "Write a bedtime story for a {k}-year-old about {human_topic}.",
        "Write a sonnet about {topic}.",
        "Give me a creative name and backstory for a fantasy villain.",
        "Write a persuasive essay arguing that every town needs a library.",
        "write a funny poem about integrals for my calculus teacher",
        "Draft a polite email to my landlord asking to fix the heating.",
        "Write the opening paragraph of a noir detective novel set in {city}.",
        "Roleplay as a medieval innkeeper greeting a tired traveller.",
        "Write a motivational speech for a high-school soccer team.",
        "Invent a new holiday and describe how people celebrate it.",
        "Write a tweet announcing {product}, playful tone.",
        "Act as {role} and answer my questions in character. First question: how was your day?",
        "Pretend you are {person}. Tell me about your greatest achievement in your own voice.",
        "You are {role}. Stay in character for the rest of this chat.",
        "Let's play a game: you're {role} and I'm a customer walking in. Begin the scene.",
        "Imagine you are {role} writing a letter home. Write that letter.",
    ),
    "math": (
        "Solve for x: {k}x + {m} = {n}",
        "What is the derivative of x^{k} * sin(x)?",
        "Compute the integral of {k}x^2 + {m}x from 0 to {k}.",
        "A train travels {n} km in {k} hours. What is its average speed in m/s?",
        "What is the probability of rolling two sixes with two fair dice?",
        "Find the determinant of the matrix [[{k}, {m}], [{m}, {n}]].",
        "Prove that the sum of two odd numbers is even.",
        "Prove that there are infinitely many primes.",
        "What is {n}% of {m}{k}0?",
        "Find the gcd of {n}{k} and {m}{k}.",
        "If a shirt costs ${n} after a {m}% discount, what was the original price?",
        "Simplify (x^2 - {k}) / (x - {k}).",
        "How many ways can {k} people sit around a round table?",
        "Compute the mean and variance of {k}, {m}, {n}, {k}{m}.",
        "Find the limit of (1 + 1/n)^n as n goes to infinity.",
        "Solve the system: x + y = {n}, x - y = {m}.",
        "A bag has {k} red and {m} blue balls. Two are drawn without replacement. Probability both are red?",
        "What is the area of a circle with radius {k} cm?",
        "Is {n}{m}{k} divisible by 3? Show the calculation.",
        "Factor x^2 + {k}x + {m}.",
        "Sum the series 1 + 1/2 + 1/4 + 1/8 + ...",
        "calculate {n} * {m} - {k}^3",
        "Find all real roots of x^3 - {k}x = 0.",
        "What is the expected value of the maximum of two dice rolls?",
        "Convert {n} degrees Fahrenheit to Celsius and show the formula.",
        "{name} buys {k} notebooks at ${m} each and pays with a ${n} bill. How much change does {name} get?",
        "A baker makes {n} cookies and packs them into boxes of {k}. How many full boxes are there, and how many cookies are left over?",
        "{name} reads {m} pages a day. The book has {n} pages. How many days will it take to finish it?",
        "A tank holds {n} litres and drains at {k} litres per minute. How long until it is empty?",
        "{name} is {k} times as old as {name2}. In {m} years the sum of their ages will be {n}. How old is {name2} now?",
        "A recipe needs {k} eggs for {m} people. How many eggs are needed for {n} people?",
        "{name} earns ${n} a week and saves {m}% of it. How much will {name} have saved after {k} weeks?",
        "A farmer has chickens and cows: {m} heads and {n} legs in total. How many cows are there?",
        "{name} had {n} marbles, gave a third of them to {name2} and then lost {k}. How many marbles are left?",
    ),
    "knowledge": (
        "What is {topic}?",
        "Explain {topic} in simple terms.",
        "Who was {person} and why are they famous?",
        "What is the capital of {country}?",
        "How does {topic} work?",
        "What were the main causes of {topic}?",
        "Tell me about the history of {topic}.",
        "What is the difference between a virus and a bacterium?",
        "Why is the sky blue?",
        "when was the printing press invented",
        "who invented the telephone",
        "What language do people speak in {country}?",
        "Give me an overview of {topic} for a school report.",
        "What role did {person} play in history?",
        "How big is the population of {country} roughly?",
        "What are the symptoms of vitamin D deficiency?",
        "Define {topic}.",
        "What does GDP measure?",
        "How do vaccines train the immune system?",
        "what is the tallest mountain in {country}",
        "Which planet has the most moons?",
        "What happened during {topic}?",
        "Is it true that goldfish have a 3-second memory?",
        "What is the boiling point of water at high altitude, and why?",
        "Describe the main features of {topic}.",
        "What is the {property} of {country}?",
        "Who discovered {discovery}?",
        "Why does {phenomenon}?",
        "What does {acronym} stand for?",
        "how many bones are in the human body",
        "Which is the largest {category} in the world?",
        "Where is {landmark} located and when was it built?",
        "what year did {topic} begin",
    ),
}

FIRST_NAMES: tuple[str, ...] = (
    "Sam",
    "Priya",
    "Jonas",
    "Aiko",
    "Lena",
    "Mateo",
    "Zara",
    "Ivan",
    "Nia",
    "Tariq",
)
CLAIMS: tuple[str, ...] = (
    "Ice cream sales and drownings rise together, so ice cream causes drowning",
    "Everyone I know uses this app, so it must be the most popular in the country",
    "We have always done it this way, so it is the best way",
    "If we allow remote work on Fridays, soon nobody will come to the office at all",
    "The new manager started in May and sales fell in June, so the manager is to blame",
    "Most successful founders dropped out of college, so dropping out makes you successful",
)
ENTITY_KINDS = ("people", "organizations", "locations", "dates", "dollar amounts", "named entities")
ROLES = (
    "a grumpy wizard",
    "a 1920s radio announcer",
    "a travel agent from the year 3000",
    "a Victorian butler",
    "a sports commentator",
    "a friendly dragon",
    "a ship's cook on a pirate vessel",
    "a medieval knight",
)
DISCOVERIES = (
    "penicillin",
    "X-rays",
    "the electron",
    "radioactivity",
    "the structure of DNA",
    "oxygen",
    "insulin",
)
PHENOMENA = (
    "ice float on water",
    "the moon have phases",
    "bread rise",
    "metal feel colder than wood",
    "the sky turn red at sunset",
    "salt melt ice on roads",
    "a compass point north",
)
LANDMARKS = (
    "Machu Picchu",
    "the Alhambra",
    "Angkor Wat",
    "the Great Zimbabwe ruins",
    "Petra",
    "the Forbidden City",
)


def infinitive(goal: str) -> str:
    """'reverses a linked list' -> 'reverse a linked list'."""
    verb, _, rest = goal.partition(" ")
    verb = verb[:-3] + "y" if verb.endswith("ies") else verb.removesuffix("s")
    return f"{verb} {rest}"


_PREFIXES = (
    "hey, ",
    "Quick question: ",
    "pls ",
    "Hi! ",
    "Hello, ",
    "Question - ",
    "ok so ",
    "Can you help? ",
)
_SUFFIXES = (
    " thanks!",
    " asap",
    " Keep it short.",
    " ty",
    " :)",
    " Please be concise.",
    "?",
    " Thank you in advance.",
)


def _fill(template: str, rng: random.Random) -> str:
    doc_kind, doc = document(rng)
    langs = rng.sample(LANGUAGES, 2)
    products = rng.sample(PRODUCTS, 2)
    names = rng.sample(FIRST_NAMES, 3)
    goals = rng.sample(CODE_GOALS, 1)
    slots: dict[str, Callable[[], str]] = {
        "topic": lambda: pick(rng, TOPICS),
        "person": lambda: pick(rng, PEOPLE),
        "country": lambda: pick(rng, COUNTRIES),
        "company": lambda: pick(rng, COMPANIES),
        "city": lambda: pick(rng, ("Lisbon", "Osaka", "Denver", "Krakow", "Pune", "Quito")),
        "name": lambda: names[0],
        "name2": lambda: names[1],
        "name3": lambda: names[2],
        "thing": lambda: pick(rng, ("pilot", "violinist", "surgeon", "chef", "sailor", "gardener")),
        "claim": lambda: pick(rng, CLAIMS),
        "human_topic": lambda: pick(rng, HUMAN_TOPICS),
        "product": lambda: products[0],
        "product2": lambda: products[1],
        "lang": lambda: langs[0],
        "lang2": lambda: langs[1],
        "lang_h": lambda: pick(rng, ("Spanish", "German", "Japanese", "Italian", "Korean", "Turkish")),
        "goal": lambda: goals[0],
        "goal_inf": lambda: infinitive(goals[0]),
        "entities": lambda: pick(rng, ENTITY_KINDS),
        "role": lambda: pick(rng, ROLES),
        "property": lambda: pick(
            rng, ("capital", "official language", "currency", "population", "largest city")
        ),
        "discovery": lambda: pick(rng, DISCOVERIES),
        "phenomenon": lambda: pick(rng, PHENOMENA),
        "acronym": lambda: pick(rng, ("NATO", "UNESCO", "GDP", "NASA", "WHO", "OPEC", "ASEAN", "CERN")),
        "category": lambda: pick(rng, ("ocean", "desert", "lake", "rainforest", "island", "volcano")),
        "landmark": lambda: pick(rng, LANDMARKS),
        "snippet": lambda: code_snippet(rng),
        "traceback": lambda: traceback_text(rng),
        "doc": lambda: doc,
        "doc_kind": lambda: doc_kind,
        "n": lambda: number(rng, 10, 500),
        "m": lambda: number(rng, 2, 60),
        "k": lambda: number(rng, 2, 9),
    }
    return re.sub(r"\{(\w+)\}", lambda match: slots[match.group(1)](), template)


def _typo(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    index = rng.randrange(len(words))
    word = words[index]
    if len(word) > 3:
        cut = rng.randrange(1, len(word) - 2)
        words[index] = word[:cut] + word[cut + 1] + word[cut] + word[cut + 2 :]
    return " ".join(words)


def add_noise(text: str, rng: random.Random) -> str:
    """Real prompts are sloppy: lower case, typos, greetings and sign-offs."""
    if rng.random() < 0.2:
        text = pick(rng, _PREFIXES) + text
    if rng.random() < 0.2:
        text = text.rstrip(".?!") + pick(rng, _SUFFIXES)
    if rng.random() < 0.2:
        text = text.lower()
    if rng.random() < 0.2:
        text = _typo(text, rng)
    return text


def simulated_prompts(per_template: int, seed: int) -> list[LabelledPrompt]:
    """``per_template`` noisy fills of every template, deduplicated (fixed texts repeat)."""
    rng = random.Random(seed)
    rows: list[LabelledPrompt] = []
    seen: set[str] = set()
    for task, templates in TEMPLATES.items():
        for index, template in enumerate(templates):
            for _ in range(per_template):
                text = add_noise(_fill(template, rng), rng)
                if text not in seen:
                    seen.add(text)
                    rows.append(LabelledPrompt(text, task, f"sim:{task}:{index:02d}", "simulated"))
    return rows
